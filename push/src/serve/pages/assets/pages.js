// push serve's pages, live: while a page says it is live (a rollout runs:
// every second; the fleet and its hosts: every 5 seconds, as often as push
// serve asks the hosts), it fetches itself again and puts the new content in
// place, keeping which log lists are open. Without this script the page
// reloads itself (a <noscript> refresh); with it, never.
"use strict";
(function () {
  let failures = 0;

  function every() {
    const main = document.getElementById("live");
    const period = main === null ? 0 : Number(main.dataset.every);
    return period > 0 ? period : 1000;
  }

  function live() {
    const main = document.getElementById("live");
    return main !== null && main.dataset.live === "true";
  }

  function openDetails(root) {
    const open = new Map();
    root.querySelectorAll("section[id] details").forEach(function (details) {
      open.set(details.closest("section").id, details.open);
    });
    return open;
  }

  async function refresh() {
    const response = await fetch(window.location.pathname, {
      cache: "no-store",
      credentials: "same-origin",
    });
    if (!response.ok) {
      throw new Error("HTTP " + response.status);
    }
    const text = await response.text();
    const next = new DOMParser().parseFromString(text, "text/html");
    const fresh = next.getElementById("live");
    const current = document.getElementById("live");
    if (fresh === null || current === null) {
      throw new Error("the page has no live part");
    }
    const open = openDetails(current);
    fresh.querySelectorAll("section[id] details").forEach(function (details) {
      const id = details.closest("section").id;
      if (open.has(id)) {
        details.open = open.get(id);
      }
    });
    current.replaceWith(fresh);
    document.title = next.title;
  }

  function tick() {
    if (!live()) {
      return;
    }
    refresh().then(
      function () {
        failures = 0;
        window.setTimeout(tick, every());
      },
      function () {
        failures = Math.min(failures + 1, 10);
        window.setTimeout(tick, every() * failures);
      },
    );
  }

  window.setTimeout(tick, every());
})();
