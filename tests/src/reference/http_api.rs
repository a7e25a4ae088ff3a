//! The HTTP API's page, from the code: deployd's routes and push serve's,
//! read from their `router` functions (every `.route(PATH, METHOD(handler))`
//! and the layers that wrap the group it is in), each handler's doc
//! comment, what it takes from the request and its answer type, and every
//! endpoint module's `//!` header, which names method, path and who may
//! call (one module per endpoint group): a route its module's header does
//! not name fails the page.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use quote::ToTokens;

use super::markdown::{code, one_line, table};
use super::source::{doc, header, type_text, Sources};

/// One service's API.
struct Api<'a> {
    /// Its heading.
    title: &'a str,
    /// The folder of its modules.
    dir: &'a str,
    /// The file with its `router` function.
    router_file: &'a str,
}

/// The page.
pub fn page(root: &Path) -> Result<String> {
    let mut text = String::from(
        "# HTTP API\n\n\
         Every route of deployd's API and of push serve's, with the layers that guard it, the handler's doc comment and what it answers; then each endpoint module's own description: who may call it, its body and its answers. Errors are described in [Error codes](error-codes.md).\n",
    );
    for api in [
        Api {
            title: "deployd",
            dir: "daemon/src/api",
            router_file: "daemon/src/api/mod.rs",
        },
        Api {
            title: "push serve",
            dir: "push/src/serve",
            router_file: "push/src/serve/api.rs",
        },
    ] {
        text.push_str(&api_text(root, &api)?);
    }
    Ok(text)
}

/// A route as the router declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    /// `GET`, `POST`.
    method: String,
    /// `/v1/deploys/{id}`.
    path: String,
    /// `deploys::get_deploy`, or `(inline)` for a closure.
    handler: String,
    /// The layers of the groups it is in, innermost first (not those every route has).
    guards: Vec<String>,
}

fn api_text(root: &Path, api: &Api) -> Result<String> {
    let sources = Sources::read(root, &[api.dir])?;
    let file = sources.file(api.router_file)?;
    let router = file
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Fn(function) if function.sig.ident == "router" => Some(function),
            _ => None,
        })
        .with_context(|| format!("no fn router in {}", api.router_file))?;
    let (routes, everywhere) = routes(router);
    ensure!(!routes.is_empty(), "no routes found in {}", api.router_file);
    let mut text = format!("\n## {}\n\n", api.title);
    if !everywhere.is_empty() {
        let layers: Vec<String> = everywhere.iter().map(|layer| code(layer)).collect();
        text.push_str(&format!(
            "Every route is wrapped in: {}.\n\n",
            layers.join(", ")
        ));
    }
    let mut modules = BTreeMap::new();
    let mut rows = Vec::new();
    for route in &routes {
        let (module_file, handler) = handler_source(api, &route.handler);
        let function = sources.function_named(&handler, Some(Path::new(&module_file)));
        // The module's header is the endpoint's description: it must name it.
        let described_in = function
            .as_ref()
            .map_or(Path::new(api.router_file), |found| found.file);
        let named = format!("{} {}", route.method, route.path);
        ensure!(
            names_route(
                &header(sources.file(&described_in.to_string_lossy())?),
                &named
            ),
            "the //! header of {} does not name `{named}`, the route it serves",
            described_in.display()
        );
        let (description, takes, answer) = match &function {
            Some(found) => {
                modules.insert(found.file.to_owned(), ());
                let answer = match &found.item.sig.output {
                    syn::ReturnType::Type(_, kind) => code(&type_text(kind)),
                    syn::ReturnType::Default => String::new(),
                };
                let description = one_line(&doc(&found.item.attrs));
                (description, takes(&found.item.sig), answer)
            }
            None => (String::new(), String::new(), String::new()),
        };
        let guards: Vec<String> = route.guards.iter().map(|guard| code(guard)).collect();
        rows.push(vec![
            route.method.clone(),
            code(&route.path),
            guards.join(", "),
            description,
            takes,
            answer,
        ]);
    }
    text.push_str(&table(
        &["Method", "Path", "Guards", "Description", "Takes", "Answer"],
        &rows,
    ));
    modules.insert(Path::new(api.router_file).to_owned(), ());
    text.push_str(&format!("\n### {}'s endpoint modules\n", api.title));
    for module in modules.keys() {
        let parsed = sources.file(&module.to_string_lossy())?;
        text.push_str(&format!(
            "\n#### {}\n\n{}\n",
            code(&module.to_string_lossy()),
            header(parsed)
        ));
    }
    Ok(text)
}

/// Whether `text` names `route` (`GET /v1/deploys`), not only a longer
/// path that begins with it (`GET /v1/deploys/{id}`).
fn names_route(text: &str, route: &str) -> bool {
    text.match_indices(route).any(|(at, _)| {
        let next = text[at + route.len()..].chars().next();
        !next.is_some_and(|next| next.is_alphanumeric() || "/{_-".contains(next))
    })
}

/// What a handler takes from the request (its extractors but the state).
fn takes(signature: &syn::Signature) -> String {
    let kinds: Vec<String> = signature
        .inputs
        .iter()
        .filter_map(|input| match input {
            syn::FnArg::Typed(typed) => Some(type_text(without_rejection(&typed.ty))),
            syn::FnArg::Receiver(_) => None,
        })
        .filter(|kind| !kind.starts_with("State<"))
        .map(|kind| code(&kind))
        .collect();
    kinds.join(", ")
}

/// `Result<Extractor, Rejection>`'s extractor (the handler answers the
/// rejection itself), or the type itself.
fn without_rejection(kind: &syn::Type) -> &syn::Type {
    let syn::Type::Path(path) = kind else {
        return kind;
    };
    let Some(last) = path
        .path
        .segments
        .last()
        .filter(|last| last.ident == "Result")
    else {
        return kind;
    };
    match &last.arguments {
        syn::PathArguments::AngleBracketed(arguments) => arguments
            .args
            .iter()
            .find_map(|argument| match argument {
                syn::GenericArgument::Type(inner) => Some(inner),
                _ => None,
            })
            .unwrap_or(kind),
        _ => kind,
    }
}

/// The file and function of a handler path (`deploys::get_deploy` is in
/// `deploys.rs` beside the router, `channel::routes::get_state` in
/// `channel/routes.rs`; `get_status`, in the router's file).
fn handler_source(api: &Api, handler: &str) -> (String, String) {
    match handler.rsplit_once("::") {
        Some((module, name)) => (
            format!("{}/{}.rs", api.dir, module.replace("::", "/")),
            name.to_owned(),
        ),
        None => (api.router_file.to_owned(), handler.to_owned()),
    }
}

/// A group of routes: a `let` of the router function, or its result.
#[derive(Debug, Default)]
struct Group {
    routes: Vec<Route>,
    merged: Vec<String>,
    layers: Vec<String>,
}

/// The routes of a `router` function and the layers around all of them.
fn routes(router: &syn::ItemFn) -> (Vec<Route>, Vec<String>) {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for statement in &router.block.stmts {
        match statement {
            syn::Stmt::Local(local) => {
                let (Some(init), syn::Pat::Ident(name)) = (&local.init, &local.pat) else {
                    continue;
                };
                groups.insert(name.ident.to_string(), group(&init.expr));
            }
            syn::Stmt::Expr(expression, None) => {
                groups.insert(String::new(), group(expression));
            }
            _ => {}
        }
    }
    let everywhere = groups
        .get("")
        .map(|top| top.layers.clone())
        .unwrap_or_default();
    let mut routes = Vec::new();
    collect(&groups, "", &mut Vec::new(), &mut routes);
    (routes, everywhere)
}

/// The routes of group `name` and those it merges, with the layers of the
/// groups between them and the top (the top's own left out).
fn collect(
    groups: &BTreeMap<String, Group>,
    name: &str,
    layers: &mut Vec<String>,
    routes: &mut Vec<Route>,
) {
    let Some(group) = groups.get(name) else {
        return;
    };
    let depth = layers.len();
    if !name.is_empty() {
        layers.splice(0..0, group.layers.iter().cloned());
    }
    for route in &group.routes {
        routes.push(Route {
            guards: layers.clone(),
            ..route.clone()
        });
    }
    for merged in &group.merged {
        collect(groups, merged, layers, routes);
    }
    layers.drain(0..layers.len() - depth);
}

/// What a chain of calls on a router adds: routes, merged groups, layers.
fn group(expression: &syn::Expr) -> Group {
    let mut group = Group::default();
    let mut calls = Vec::new();
    let mut current = expression;
    while let syn::Expr::MethodCall(call) = current {
        calls.push(call);
        current = &call.receiver;
    }
    if let syn::Expr::Path(base) = current {
        group.merged.push(base.path.to_token_stream().to_string());
    }
    for call in calls.into_iter().rev() {
        let arguments: Vec<&syn::Expr> = call.args.iter().collect();
        match (call.method.to_string().as_str(), arguments.as_slice()) {
            ("route", [path, methods]) => group.routes.extend(route(path, methods)),
            ("merge", [syn::Expr::Path(other)]) => {
                group.merged.push(other.path.to_token_stream().to_string());
            }
            ("layer", [layer]) => group.layers.push(layer_name(layer)),
            _ => {}
        }
    }
    group
}

/// `.route("/path", get(handler).post(other))`'s routes.
fn route(path: &syn::Expr, methods: &syn::Expr) -> Vec<Route> {
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(path),
        ..
    }) = path
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut current = methods;
    loop {
        let (method, handler, next) = match current {
            syn::Expr::Call(call) => (
                call.func.to_token_stream().to_string(),
                call.args.first(),
                None,
            ),
            syn::Expr::MethodCall(call) => (
                call.method.to_string(),
                call.args.first(),
                Some(&*call.receiver),
            ),
            _ => break,
        };
        let handler = match handler {
            Some(syn::Expr::Path(handler)) => handler
                .path
                .to_token_stream()
                .to_string()
                .replace(" :: ", "::"),
            _ => "(inline)".to_owned(),
        };
        found.push(Route {
            method: method.to_uppercase(),
            path: path.value(),
            handler,
            guards: Vec::new(),
        });
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    found.reverse();
    found
}

/// A layer, named by the function it runs (`read_auth::require_signed_read`)
/// or, for other layers, as written.
fn layer_name(layer: &syn::Expr) -> String {
    if let syn::Expr::Call(call) = layer {
        let function = call.func.to_token_stream().to_string();
        if function.ends_with("from_fn") || function.ends_with("from_fn_with_state") {
            if let Some(syn::Expr::Path(inner)) = call.args.last() {
                return inner
                    .path
                    .to_token_stream()
                    .to_string()
                    .replace(" :: ", "::");
            }
        }
    }
    layer
        .to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_named_only_by_its_whole_path() {
        assert!(names_route(
            "`GET /v1/deploys?limit=N` (history)",
            "GET /v1/deploys"
        ));
        assert!(names_route("and GET /healthz.", "GET /healthz"));
        assert!(!names_route("`GET /v1/deploys/{id}`", "GET /v1/deploys"));
    }

    #[test]
    fn routes_carry_the_layers_of_their_groups() {
        let router: syn::ItemFn = syn::parse_quote! {
            fn router(state: State) -> Router {
                let reads = Router::new().route("/v1/status", get(status::get_status));
                let guarded = reads.layer(from_fn_with_state(state.clone(), auth::require));
                let writes = Router::new()
                    .route("/v1/deploy", post(deploy::post_deploy))
                    .layer(DefaultBodyLimit::max(LIMIT));
                Router::new()
                    .route("/healthz", get(|| async { "ok" }))
                    .merge(guarded)
                    .merge(writes)
                    .layer(from_fn(limits::timeout))
            }
        };
        let (routes, everywhere) = routes(&router);
        assert_eq!(everywhere, ["limits::timeout"]);
        let summary: Vec<(String, String, Vec<String>)> = routes
            .into_iter()
            .map(|route| {
                (
                    route.method + " " + &route.path,
                    route.handler,
                    route.guards,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("GET /healthz".to_owned(), "(inline)".to_owned(), vec![]),
                (
                    "GET /v1/status".to_owned(),
                    "status::get_status".to_owned(),
                    vec!["auth::require".to_owned()]
                ),
                (
                    "POST /v1/deploy".to_owned(),
                    "deploy::post_deploy".to_owned(),
                    vec!["DefaultBodyLimit::max(LIMIT)".to_owned()]
                ),
            ]
        );
    }
}
