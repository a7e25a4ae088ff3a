//! The payload's parsing: every kind-specific field checked for foreign
//! kinds, null is not absent, a specialisation's name, and `retry_failed`.

mod kinds {
    use super::super::*;

    #[test]
    fn every_kind_specific_field_is_checked_for_foreign_kinds() {
        // A field added to WirePayload but not to kind_fields() would be
        // accepted by every kind; this keeps the two lists together.
        let wire = WirePayload {
            kind: Some(Kind::Deploy),
            host: Some("h".parse().expect("host")),
            issued_at: Some(1),
            expires_at: Some(2),
            nonce: Some("00".repeat(16).parse().expect("nonce")),
            deploy_id: Some("d".parse().expect("id")),
            store_path: Some(String::new()),
            action: Some(Action::Switch),
            flake: Some(String::new()),
            rev: Some("0".repeat(40).parse().expect("rev")),
            allow_downgrade: Some(true),
            confirm_within_s: Some(1),
            specialisation: Some(String::new()),
            retry_failed: Some(true),
            method: Some(String::new()),
            path: Some(String::new()),
        };
        let json = serde_json::to_value(&wire).expect("json");
        let mut serialized: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .filter(|key| !["kind", "host", "issued_at", "expires_at"].contains(key))
            .collect();
        let mut checked: Vec<&str> = wire.kind_fields().iter().map(|(name, _)| *name).collect();
        serialized.sort_unstable();
        checked.sort_unstable();
        assert_eq!(serialized, checked);
        assert!(wire.kind_fields().iter().all(|(_, present)| *present));
    }

    #[test]
    fn null_is_not_absent() {
        let payload = br#"{"kind":"read","host":"h","issued_at":1,"expires_at":2,"method":"GET","path":"/","nonce":null}"#;
        let host = "h".parse().expect("host");
        let error = parse_payload(crate::PAYLOAD_TYPE, payload, &host)
            .err()
            .expect("null nonce");
        assert!(matches!(error, PayloadError::Json(_)), "{error:?}");
        let without =
            br#"{"kind":"read","host":"h","issued_at":1,"expires_at":2,"method":"GET","path":"/"}"#;
        assert!(parse_payload(crate::PAYLOAD_TYPE, without, &host).is_ok());
    }
}

mod specialisation {
    use super::super::*;

    fn deploy_with(specialisation: &str) -> Result<Message<String>, PayloadError> {
        let payload = format!(
            r#"{{"kind":"deploy","host":"h","issued_at":1,"expires_at":2,"nonce":"{}","deploy_id":"d","store_path":"/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x","action":"switch","specialisation":{}}}"#,
            "00".repeat(16),
            serde_json::to_string(specialisation).expect("json")
        );
        match parse_payload(
            crate::PAYLOAD_TYPE,
            payload.as_bytes(),
            &"h".parse().expect("host"),
        )? {
            Addressed::Message(message) => Ok(message),
            Addressed::OtherHosts(hosts) => panic!("addressed to {hosts}"),
        }
    }

    #[test]
    fn a_specialisation_is_one_safe_path_component() {
        let message = deploy_with("work-vpn_2.1").expect("a fine name");
        let Request::Deploy(deploy) = message.request else {
            panic!("not a deploy");
        };
        assert_eq!(deploy.specialisation.as_deref(), Some("work-vpn_2.1"));
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            let error = deploy_with(bad).expect_err(bad);
            assert!(
                matches!(
                    error,
                    PayloadError::Value {
                        field: "specialisation",
                        ..
                    }
                ),
                "{bad:?}: {error:?}"
            );
        }
    }
}

mod retry_failed {
    use super::super::*;

    const DEPLOY: &str = r#""kind":"deploy","host":"h","issued_at":1,"expires_at":2,"deploy_id":"d","store_path":"/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x","action":"switch""#;

    fn parse(extra: &str) -> Result<Message<String>, PayloadError> {
        let payload = format!(r#"{{{DEPLOY},"nonce":"{}"{extra}}}"#, "00".repeat(16));
        match parse_payload(
            crate::PAYLOAD_TYPE,
            payload.as_bytes(),
            &"h".parse().expect("host"),
        )? {
            Addressed::Message(message) => Ok(message),
            Addressed::OtherHosts(hosts) => panic!("addressed to {hosts}"),
        }
    }

    fn retry_failed(message: &Message<String>) -> bool {
        match &message.request {
            Request::Deploy(deploy) => deploy.retry_failed,
            _ => panic!("not a deploy"),
        }
    }

    #[test]
    fn absent_means_false_and_false_is_not_serialized() {
        let message = parse("").expect("a deploy without the field");
        assert!(!retry_failed(&message));
        let checked = message.check_store_path().expect("store path");
        let bytes = String::from_utf8(checked.to_payload_bytes()).expect("utf-8");
        assert!(!bytes.contains("retry_failed"), "{bytes}");
    }

    #[test]
    fn true_round_trips() {
        let message = parse(r#","retry_failed":true"#).expect("a deploy with the field");
        assert!(retry_failed(&message));
        let checked = message.check_store_path().expect("store path");
        let bytes = String::from_utf8(checked.to_payload_bytes()).expect("utf-8");
        assert!(bytes.contains(r#""retry_failed":true"#), "{bytes}");
        let again = parse_payload(
            crate::PAYLOAD_TYPE,
            bytes.as_bytes(),
            &"h".parse().expect("host"),
        )
        .expect("parses again");
        let Addressed::Message(again) = again else {
            panic!("not for this host")
        };
        assert!(retry_failed(&again));
    }

    #[test]
    fn an_explicit_false_is_accepted_and_null_is_not() {
        let message = parse(r#","retry_failed":false"#).expect("false");
        assert!(!retry_failed(&message));
        assert!(matches!(
            parse(r#","retry_failed":null"#),
            Err(PayloadError::Json(_))
        ));
        assert!(matches!(
            parse(r#","retry_failed":"yes""#),
            Err(PayloadError::Json(_))
        ));
    }

    #[test]
    fn only_a_deploy_may_carry_it_and_unknown_fields_stay_refused() {
        let confirm = format!(
            r#"{{"kind":"confirm","host":"h","issued_at":1,"expires_at":2,"deploy_id":"d","nonce":"{}","retry_failed":true}}"#,
            "00".repeat(16)
        );
        let error = parse_payload(
            crate::PAYLOAD_TYPE,
            confirm.as_bytes(),
            &"h".parse().expect("host"),
        )
        .err()
        .expect("foreign field");
        assert!(
            matches!(
                error,
                PayloadError::Foreign {
                    field: "retry_failed",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(matches!(
            parse(r#","retry_failed_too":true"#),
            Err(PayloadError::Json(_))
        ));
    }
}
