use super::*;

const S: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn p() -> Presence {
    Presence::new(PresenceConfig::default(), 42)
}

fn drain(p: &mut Presence) -> Vec<Out> {
    std::iter::from_fn(|| p.poll_send()).collect()
}

fn msg<'a>(room: &'a str, user: &'a str, text: &'a str, seq: i64) -> Chat<'a> {
    Chat::Message {
        room,
        text,
        user,
        seq,
    }
}

#[test]
fn hello_makes_a_user_connectable_and_it_is_pinged_about_every_150_s() {
    let mut p = p();
    p.handle(
        secs(0),
        &Chat::Hello {
            user: "ann",
            seq: 1,
        },
    );
    assert_eq!(p.users().collect::<Vec<_>>(), [("ann", true)]);
    let next = p.poll_timeout().unwrap();
    assert!(next >= secs(135) && next <= secs(165), "{next:?}");
    p.handle_timeout(next - Duration::from_millis(1));
    assert_eq!(drain(&mut p), []);
    p.handle_timeout(next);
    let sent = drain(&mut p);
    let [Out::Ping { user, seq }] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    assert_eq!(user, "ann");
    // Answered within the second: still connectable, next ping ~150 s on.
    p.handle(
        next + Duration::from_millis(300),
        &Chat::Pong {
            user: "ann",
            seq: *seq,
        },
    );
    p.handle_timeout(next + 2 * S);
    assert_eq!(p.users().collect::<Vec<_>>(), [("ann", true)]);
    assert_eq!(p.counters().pongs_matched, 1);
    let again = p.poll_timeout().unwrap();
    assert!(
        again >= next + secs(135) && again <= next + secs(165),
        "{again:?}"
    );
    // Not answered: unconnectable after the 1 s window.
    p.handle_timeout(again);
    assert_eq!(drain(&mut p).len(), 1);
    p.handle_timeout(again + Duration::from_millis(999));
    assert_eq!(p.users().collect::<Vec<_>>(), [("ann", true)]);
    p.handle_timeout(again + S);
    assert_eq!(p.users().collect::<Vec<_>>(), [("ann", false)]);
    assert_eq!(p.counters().unanswered, 1);
    // A later pong brings it back.
    p.handle(
        again + secs(5),
        &Chat::Pong {
            user: "ann",
            seq: 999,
        },
    );
    assert_eq!(p.users().collect::<Vec<_>>(), [("ann", true)]);
}

#[test]
fn anyones_ping_restarts_the_timer() {
    let mut p = p();
    p.handle(
        secs(0),
        &Chat::Hello {
            user: "ann",
            seq: 1,
        },
    );
    // Another node pings ann at 100 s: ours is pushed to 100 s + ~150 s.
    p.handle(
        secs(100),
        &Chat::Ping {
            user: "ann",
            seq: 7,
        },
    );
    p.handle_timeout(secs(200));
    assert_eq!(drain(&mut p), []);
    let next = p.poll_timeout().unwrap();
    assert!(next >= secs(235) && next <= secs(265), "{next:?}");
}

#[test]
fn a_chat_only_client_stays_unconnectable_and_is_forgotten() {
    let mut p = p();
    p.handle(secs(0), &msg("lobby", "bot", "beep", 1));
    assert_eq!(p.users().collect::<Vec<_>>(), [("bot", false)]);
    assert_eq!(p.rooms().collect::<Vec<_>>(), [("lobby", vec!["bot"])]);
    // Pinged on schedule, never answers.
    let mut t = secs(0);
    while t < secs(899) {
        t += S;
        p.handle_timeout(t);
    }
    assert!(p.counters().pings_sent >= 5, "{:?}", p.counters());
    assert_eq!(p.users().collect::<Vec<_>>(), [("bot", false)]);
    // Unconnectable for 900 s: forgotten (the room stays, empty; its scrollback too).
    p.handle_timeout(secs(900));
    assert_eq!(p.users().count(), 0);
    assert_eq!(p.rooms().collect::<Vec<_>>(), [("lobby", vec![])]);
    assert_eq!(p.scrollback("lobby").count(), 1);
    assert_eq!(p.counters().forgotten, 1);
}

#[test]
fn goodbye_join_and_leave() {
    let mut p = p();
    p.handle(
        secs(0),
        &Chat::Hello {
            user: "ann",
            seq: 1,
        },
    );
    p.handle(
        secs(0),
        &Chat::Join {
            room: "a",
            user: "ann",
            seq: 2,
        },
    );
    p.handle(
        secs(0),
        &Chat::Join {
            room: "b",
            user: "ann",
            seq: 3,
        },
    );
    p.handle(
        secs(0),
        &Chat::Join {
            room: "b",
            user: "bob",
            seq: 1,
        },
    );
    assert_eq!(
        p.rooms().collect::<Vec<_>>(),
        [("a", vec!["ann"]), ("b", vec!["ann", "bob"])]
    );
    p.handle(
        secs(1),
        &Chat::Leave {
            room: "b",
            user: "ann",
            seq: 4,
        },
    );
    assert_eq!(
        p.rooms().collect::<Vec<_>>(),
        [("a", vec!["ann"]), ("b", vec!["bob"])]
    );
    p.handle(
        secs(2),
        &Chat::Goodbye {
            user: "bob",
            seq: 2,
        },
    );
    assert_eq!(p.users().collect::<Vec<_>>(), [("ann", true)]);
    assert_eq!(
        p.rooms().collect::<Vec<_>>(),
        [("a", vec!["ann"]), ("b", vec![])]
    );
}

#[test]
fn lists_are_answered_one_name_each_and_never_when_empty() {
    let mut p = p();
    p.handle(
        secs(0),
        &Chat::ListUsers {
            seq: 1,
            payload: None,
        },
    );
    p.handle(
        secs(0),
        &Chat::ListRooms {
            seq: 2,
            payload: None,
        },
    );
    p.handle(
        secs(0),
        &Chat::ListRoomUsers {
            room: "lobby",
            seq: 3,
            payload: None,
        },
    );
    assert_eq!(drain(&mut p), []);
    p.handle(
        secs(0),
        &Chat::Hello {
            user: "ann",
            seq: 1,
        },
    );
    p.handle(
        secs(0),
        &Chat::Hello {
            user: "bob",
            seq: 1,
        },
    );
    p.handle(secs(0), &msg("lobby", "ann", "hi", 1));
    p.handle(secs(0), &msg("quiet", "bot", "beep", 1)); // bot is not connectable
    p.handle(
        secs(1),
        &Chat::ListUsers {
            seq: 9,
            payload: None,
        },
    );
    p.handle(
        secs(1),
        &Chat::ListRooms {
            seq: 10,
            payload: None,
        },
    );
    p.handle(
        secs(1),
        &Chat::ListRoomUsers {
            room: "lobby",
            seq: 11,
            payload: None,
        },
    );
    assert_eq!(
        drain(&mut p),
        [
            Out::ListUsers {
                seq: 9,
                name: "ann".into()
            },
            Out::ListUsers {
                seq: 9,
                name: "bob".into()
            },
            Out::ListRooms {
                seq: 10,
                name: "lobby".into()
            },
            Out::ListRoomUsers {
                room: "lobby".into(),
                seq: 11,
                name: "ann".into()
            },
        ]
    );
    // Replies from other nodes teach us.
    p.handle(
        secs(2),
        &Chat::ListUsers {
            seq: 9,
            payload: Some("cat"),
        },
    );
    p.handle(
        secs(2),
        &Chat::ListRoomUsers {
            room: "hall",
            seq: 11,
            payload: Some("dan"),
        },
    );
    let users: Vec<_> = p.users().collect();
    assert!(users.contains(&("cat", true)) && users.contains(&("dan", true)));
    assert!(p.rooms().any(|(r, u)| r == "hall" && u == ["dan"]));
    // An Out writes as the message it stands for.
    let o = Out::ListRoomUsers {
        room: "hall".into(),
        seq: 11,
        name: "dan".into(),
    };
    let mut bytes = Vec::new();
    o.chat().write(&mut bytes).unwrap();
    assert_eq!(super::super::oschat::parse(&bytes).unwrap(), o.chat());
}

#[test]
fn scrollback_and_tables_are_bounded() {
    let cfg = PresenceConfig {
        scrollback: 3,
        max_users: 2,
        max_rooms: 2,
        ..PresenceConfig::default()
    };
    let mut p = Presence::new(cfg, 1);
    for i in 0..5 {
        let text = format!("line {i}");
        p.handle(secs(0), &msg("lobby", "ann", &text, i));
    }
    let lines: Vec<_> = p.scrollback("lobby").map(|l| l.text.clone()).collect();
    assert_eq!(lines, ["line 2", "line 3", "line 4"]);
    p.handle(secs(0), &msg("lobby", "bob", "x", 1));
    p.handle(secs(0), &msg("lobby", "cat", "x", 1)); // a third user: not recorded
    p.handle(secs(0), &msg("hall", "ann", "x", 1));
    p.handle(secs(0), &msg("attic", "ann", "x", 1)); // a third room: not recorded
    assert_eq!(p.users().count(), 2);
    assert_eq!(p.rooms().count(), 2);
    assert_eq!(p.counters().over_limit, 2);
}

#[test]
fn the_schedule_is_spread_and_reproducible() {
    let times = |seed| {
        let mut p = Presence::new(PresenceConfig::default(), seed);
        for i in 0..200 {
            p.handle(
                secs(0),
                &Chat::Hello {
                    user: &format!("u{i}"),
                    seq: 1,
                },
            );
        }
        p.users.values().map(|u| u.next_ping).collect::<Vec<_>>()
    };
    let a = times(7);
    assert_eq!(a, times(7));
    assert_ne!(a, times(8));
    assert!(a.iter().all(|t| *t >= secs(135) && *t <= secs(165)));
    let min = a.iter().min().unwrap();
    let max = a.iter().max().unwrap();
    assert!(*max - *min > secs(20), "spread {:?}", *max - *min);
}
