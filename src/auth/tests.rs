//! Unit tests of the `[auth]` policy.

use super::*;
use crate::config::AppAuth;

fn section() -> AuthSection {
    AuthSection::default()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn default_is_open() {
    let p = Policy::from_config(&section()).unwrap();
    assert!(p.is_open(Action::Publish, "live/x") && p.is_open(Action::Play, "live/x"));
    let path = StreamPath::new("live", "x");
    assert_eq!(p.check(Action::Publish, ip("1.2.3.4"), &path, 0), Ok(()));
}

#[test]
fn static_keys() {
    let mut a = section();
    a.publish = "key".into();
    a.publish_keys = vec!["s3cret".into(), "other".into()];
    let p = Policy::from_config(&a).unwrap();
    let peer = ip("10.0.0.1");
    let check =
        |app: &str, name: &str| p.check(Action::Publish, peer, &StreamPath::new(app, name), 0);
    assert_eq!(check("live", "cam?key=s3cret"), Ok(()));
    assert_eq!(check("live?key=other", "cam"), Ok(()));
    assert_eq!(check("live", "cam?key=nope"), Err(Denial::BadKey));
    assert_eq!(check("live", "cam"), Err(Denial::Missing));
    // Play stays open.
    assert_eq!(
        p.check(Action::Play, peer, &StreamPath::new("live", "cam"), 0),
        Ok(())
    );
}

#[test]
fn tokens() {
    let mut a = section();
    a.play = "token".into();
    a.secret = "k".into();
    let p = Policy::from_config(&a).unwrap();
    let t = sign(b"k", Action::Play, "live/cam", 100);
    let peer = ip("::1");
    let path = StreamPath::new("live", &format!("cam?token={t}"));
    assert_eq!(p.check(Action::Play, peer, &path, 99), Ok(()));
    assert_eq!(
        p.check(Action::Play, peer, &path, 101),
        Err(Denial::Expired)
    );
    // Bound to the stream and the action.
    let other = StreamPath::new("live", &format!("cam2?token={t}"));
    assert_eq!(
        p.check(Action::Play, peer, &other, 99),
        Err(Denial::BadToken)
    );
    let tp = sign(b"k", Action::Publish, "live/cam", 100);
    let wrong = StreamPath::new(&format!("live?token={tp}"), "cam");
    assert_eq!(
        p.check(Action::Play, peer, &wrong, 99),
        Err(Denial::BadToken)
    );
}

#[test]
fn cidr_deny_wins() {
    let mut a = section();
    a.play_allow = vec!["127.0.0.0/8".into()];
    a.play_deny = vec!["127.0.0.1/32".into()];
    let p = Policy::from_config(&a).unwrap();
    let path = StreamPath::new("live", "x");
    assert_eq!(
        p.check(Action::Play, ip("127.0.0.1"), &path, 0),
        Err(Denial::Address)
    );
    assert_eq!(p.check(Action::Play, ip("127.0.0.2"), &path, 0), Ok(()));
    assert_eq!(
        p.check(Action::Play, ip("10.0.0.1"), &path, 0),
        Err(Denial::Address)
    );
    assert_eq!(p.check(Action::Publish, ip("127.0.0.1"), &path, 0), Ok(()));
}

#[test]
fn bad_sections_are_named() {
    let mut a = section();
    a.publish = "token".into();
    a.play = "maybe".into();
    a.play_deny = vec!["300.0.0.0/8".into()];
    let keys: Vec<_> = problems(&a).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["auth.publish", "auth.play", "auth.play_deny"]);
}

#[test]
fn query_params() {
    assert_eq!(query_param("a=1&token=x&b", "token"), Some("x"));
    assert_eq!(query_param("tokens=1", "token"), None);
    assert_eq!(query_param("", "key"), None);
}

#[test]
fn app_rules_override_the_section_and_fall_back_to_it() {
    let mut a = section();
    a.publish = "key".into();
    a.publish_keys = vec!["k".into()];
    a.app = vec![
        AppAuth {
            name: "open".into(),
            publish: Some("open".into()),
            ..AppAuth::default()
        },
        AppAuth {
            name: "other".into(),
            publish_keys: Some(vec!["o".into()]),
            play_deny: Some(vec!["10.0.0.0/8".into()]),
            ..AppAuth::default()
        },
    ];
    let p = Policy::from_config(&a).unwrap();
    let peer = ip("10.1.2.3");
    let publish =
        |app: &str, name: &str| p.check(Action::Publish, peer, &StreamPath::new(app, name), 0);
    assert_eq!(publish("open", "cam"), Ok(()));
    assert_eq!(publish("live", "cam"), Err(Denial::Missing));
    assert_eq!(publish("live", "cam?key=k"), Ok(()));
    // "other" keeps the section's mode with its own keys.
    assert_eq!(publish("other", "cam?key=k"), Err(Denial::BadKey));
    assert_eq!(publish("other", "cam?key=o"), Ok(()));
    assert_eq!(
        p.check(Action::Play, peer, &StreamPath::new("other", "cam"), 0),
        Err(Denial::Address)
    );
    assert!(p.is_open(Action::Play, "live/cam"));
    assert!(!p.is_open(Action::Play, "other/cam"));
}

#[test]
fn hook_mode_needs_a_url_and_maps_outcomes() {
    let mut a = section();
    a.play = "hook".into();
    assert!(Policy::from_config(&a).is_err());
    a.hook_url = "http://127.0.0.1:9/auth".into();
    let p = Policy::from_config(&a).unwrap();
    assert!(p.hook_for(Action::Play, "live/cam").is_some());
    assert!(p.hook_for(Action::Publish, "live/cam").is_none());
    assert_eq!(p.hook_verdict(&Outcome::Allow), Ok(()));
    assert_eq!(p.hook_verdict(&Outcome::Deny(403)), Err(Denial::Hook));
    assert_eq!(
        p.hook_verdict(&Outcome::Failed("x".into())),
        Err(Denial::HookFailed)
    );
    a.hook_on_error = "allow".into();
    let p = Policy::from_config(&a).unwrap();
    assert_eq!(p.hook_verdict(&Outcome::Failed("x".into())), Ok(()));
    // A full queue refuses even so: a flood must not open the node.
    assert_eq!(p.hook_verdict(&Outcome::Busy), Err(Denial::HookBusy));
    assert_eq!(Denial::HookBusy.as_str(), "hook_busy");
    assert_eq!(
        rejection_label(Action::Play, Denial::HookBusy),
        crate::metrics::AuthRejection::PlayHookBusy
    );
    a.hook_on_error = "maybe".into();
    assert!(Policy::from_config(&a).is_err());
}

#[test]
fn duplicate_or_bad_app_names_are_errors() {
    let mut a = section();
    a.app = vec![
        AppAuth {
            name: "x".into(),
            ..AppAuth::default()
        },
        AppAuth {
            name: "x".into(),
            ..AppAuth::default()
        },
    ];
    assert!(problems(&a).iter().any(|(k, _)| *k == "auth.app.name"));
}

#[test]
fn the_app_rule_follows_the_routing_key_not_the_connect_app() {
    // `[auth]` is open; `live` needs a play key; `live/vip` is open again.
    let mut a = section();
    a.app = vec![
        AppAuth {
            name: "live".into(),
            play: Some("key".into()),
            play_keys: Some(vec!["watch".into()]),
            ..AppAuth::default()
        },
        AppAuth {
            name: "live/vip".into(),
            play: Some("open".into()),
            ..AppAuth::default()
        },
    ];
    let p = Policy::from_config(&a).unwrap();
    let peer = ip("10.0.0.1");
    let play = |app: &str, name: &str| p.check(Action::Play, peer, &StreamPath::new(app, name), 0);
    // The stream `live/team/cam`, however the client splits it.
    assert_eq!(play("live", "team/cam"), Err(Denial::Missing));
    assert_eq!(play("live/team", "cam"), Err(Denial::Missing));
    assert_eq!(play("live/team", "cam?key=watch"), Ok(()));
    assert!(!p.is_open(Action::Play, "live/team/cam"));
    // The longest matching rule wins, from either split.
    assert_eq!(play("live", "vip/cam"), Ok(()));
    assert_eq!(play("live/vip", "cam"), Ok(()));
    assert!(p.is_open(Action::Play, "live/vip/cam"));
    // A rule covers whole segments only.
    assert_eq!(play("liveX", "cam"), Ok(()));
    assert!(p.is_open(Action::Play, "liveX/cam"));
    assert!(p.is_open(Action::Play, "live"));
}

#[test]
fn hook_choice_follows_the_routing_key() {
    let mut a = section();
    a.hook_url = "http://127.0.0.1:9/auth".into();
    a.app = vec![AppAuth {
        name: "live".into(),
        publish: Some("hook".into()),
        ..AppAuth::default()
    }];
    let p = Policy::from_config(&a).unwrap();
    assert!(p.hook_for(Action::Publish, "live/team/cam").is_some());
    assert!(p.hook_for(Action::Publish, "other/live/cam").is_none());
}
