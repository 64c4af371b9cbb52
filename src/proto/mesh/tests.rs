//! A seeded simulator: nodes on two segments, messages delivered to every other live node on
//! the same segment after a delay (and, optionally, lost), time in 10 ms steps.

use super::*;

const NET_A: &str = "10.0.1.0/24";
const NET_B: &str = "10.0.2.0/24";
const STEP: Duration = Duration::from_millis(10);

struct Node {
    mesh: Mesh,
    /// Segment (network) of each interface.
    segs: Vec<&'static str>,
    alive: bool,
}

struct Sim {
    now: Duration,
    nodes: Vec<Node>,
    /// (deliver at, to node, on its interface, message)
    flight: Vec<(Duration, usize, usize, MeshMsg)>,
    rng: SplitMix64,
    loss_percent: u64,
}

fn cfg(node: &str, segs: &[&'static str]) -> MeshConfig {
    MeshConfig::new(
        node,
        segs.iter()
            .map(|s| Iface {
                network: (*s).to_owned(),
            })
            .collect(),
    )
}

impl Sim {
    fn new(loss_percent: u64) -> Sim {
        Sim {
            now: Duration::ZERO,
            nodes: Vec::new(),
            flight: Vec::new(),
            rng: SplitMix64::new(99),
            loss_percent,
        }
    }

    fn add(&mut self, name: &str, segs: &[&'static str], seed: u64) -> usize {
        self.nodes.push(Node {
            mesh: Mesh::new(cfg(name, segs), seed, self.now),
            segs: segs.to_vec(),
            alive: true,
        });
        self.nodes.len() - 1
    }

    fn restart(&mut self, n: usize, seed: u64) {
        let name = self.nodes[n].mesh.cfg.node.clone();
        let segs = self.nodes[n].segs.clone();
        self.nodes[n].mesh = Mesh::new(cfg(&name, &segs), seed, self.now);
        self.nodes[n].alive = true;
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
        self.flight = later;
        for (_, to, iface, msg) in due {
            if self.nodes[to].alive {
                self.nodes[to].mesh.handle(now, iface, &msg);
            }
        }
        for n in 0..self.nodes.len() {
            if !self.nodes[n].alive {
                continue;
            }
            self.nodes[n].mesh.handle_timeout(now);
            while let Some(s) = self.nodes[n].mesh.poll_send() {
                let seg = self.nodes[n].segs[s.iface];
                for m in 0..self.nodes.len() {
                    if m == n || !self.nodes[m].alive {
                        continue;
                    }
                    if let Some(i) = self.nodes[m].segs.iter().position(|x| *x == seg) {
                        if self.rng.next_u64() % 100 < self.loss_percent {
                            continue;
                        }
                        let delay = Duration::from_millis(1 + self.rng.next_u64() % 20);
                        self.flight.push((now + delay, m, i, s.msg.clone()));
                    }
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration, mut check: impl FnMut(&Sim)) {
        let end = self.now + d;
        while self.now < end {
            self.step();
            check(self);
        }
    }

    /// The live nodes active on (segment of `seg`, network `net`).
    fn active(&self, seg: &str, net: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| {
                let i = n.segs.iter().position(|s| *s == seg)?;
                (n.mesh.role(i, net) == Some(Role::Active)).then(|| n.mesh.cfg.node.clone())
            })
            .collect()
    }
}

#[test]
fn one_gateway_per_direction_failover_no_preemption_and_resign() {
    let mut sim = Sim::new(0);
    let g1 = sim.add("NODE-1", &[NET_A, NET_B], 1);
    let _g2 = sim.add("NODE-2", &[NET_A, NET_B], 2);
    let plain = sim.add("NODE-0", &[NET_A], 3);
    // Converges: after the 3 s listen, the lowest GUID wins both directions.
    sim.run_for(Duration::from_secs(5), |_| {});
    assert_eq!(sim.active(NET_A, NET_B), ["NODE-1"]);
    assert_eq!(sim.active(NET_B, NET_A), ["NODE-1"]);
    assert!(sim.nodes[g1].mesh.forwards(0, 1) && sim.nodes[g1].mesh.forwards(1, 0));
    assert!(!sim.nodes[1].mesh.forwards(0, 1) && !sim.nodes[1].mesh.forwards(1, 0));
    assert_eq!(sim.nodes[plain].mesh.role(0, NET_B), None);
    // Steady: never two gateways, never none.
    sim.run_for(Duration::from_secs(20), |s| {
        assert_eq!(s.active(NET_A, NET_B).len(), 1, "at {:?}", s.now);
        assert_eq!(s.active(NET_B, NET_A).len(), 1, "at {:?}", s.now);
    });
    // NODE-1 dies: NODE-2 takes over within 3 s of silence + the wait (+ delivery).
    sim.nodes[g1].alive = false;
    let died = sim.now;
    let mut took_over = None;
    sim.run_for(Duration::from_secs(6), |s| {
        if took_over.is_none()
            && s.active(NET_A, NET_B) == ["NODE-2"]
            && s.active(NET_B, NET_A) == ["NODE-2"]
        {
            took_over = Some(s.now - died);
        }
    });
    let took = took_over.expect("NODE-2 never took over");
    assert!(
        took <= Duration::from_millis(4000),
        "failover took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "failover too early: {took:?}"
    );
    // NODE-1 comes back: it listens and does not take over.
    sim.restart(g1, 11);
    sim.run_for(Duration::from_secs(20), |s| {
        assert_eq!(s.active(NET_A, NET_B), ["NODE-2"], "at {:?}", s.now);
        assert_eq!(s.active(NET_B, NET_A), ["NODE-2"], "at {:?}", s.now);
    });
    // NODE-2 resigns (shutting down): NODE-1 takes over at once, after its wait.
    sim.nodes[1].mesh.resign_all();
    let resigned = sim.now;
    let mut back = None;
    sim.run_for(Duration::from_secs(2), |s| {
        if back.is_none()
            && s.active(NET_A, NET_B) == ["NODE-1"]
            && s.active(NET_B, NET_A) == ["NODE-1"]
        {
            back = Some(s.now - resigned);
        }
    });
    let back = back.expect("NODE-1 never took over after the resign");
    assert!(back <= Duration::from_millis(400), "took {back:?}");
}

#[test]
fn a_winner_holds_traffic_during_its_wait_and_steps_back_for_another_heartbeat() {
    let mut m = Mesh::new(cfg("NODE-1", &[NET_A, NET_B]), 5, Duration::ZERO);
    while m.poll_send().is_some() {}
    // Nothing heard for 3 s: it elects itself and waits 50-250 ms, holding traffic a -> b.
    m.handle_timeout(Duration::from_secs(3));
    let Some(Role::Waiting(at)) = m.role(0, NET_B) else {
        panic!("{:?}", m.role(0, NET_B));
    };
    assert!(at >= Duration::from_millis(3050) && at <= Duration::from_millis(3250));
    assert!(m.holding(0, 1) && !m.forwards(0, 1));
    // Another node's heartbeat for b on segment a arrives first: back to standby.
    m.handle(
        Duration::from_millis(3040),
        0,
        &MeshMsg::Heartbeat {
            node: "NODE-9".into(),
            network: NET_B.into(),
        },
    );
    assert_eq!(m.role(0, NET_B), Some(Role::Standby));
    assert!(!m.holding(0, 1) && !m.forwards(0, 1));
    // The other direction went on: active after its wait, heartbeating on b.
    m.handle_timeout(Duration::from_millis(3300));
    assert_eq!(m.role(1, NET_A), Some(Role::Active));
    let sent: Vec<Send> = std::iter::from_fn(|| m.poll_send()).collect();
    assert!(sent.iter().any(|s| s.iface == 1
        && s.msg
            == MeshMsg::Heartbeat {
                node: "NODE-1".into(),
                network: NET_A.into()
            }));
}

#[test]
fn announces_expire_and_are_relayed_with_one_more_hop() {
    let mut m = Mesh::new(cfg("NODE-1", &[NET_A, NET_B]), 5, Duration::ZERO);
    let first: Vec<Send> = std::iter::from_fn(|| m.poll_send()).collect();
    // At start: on a, "I reach b in 1"; on b, "I reach a in 1".
    assert!(first.contains(&Send {
        iface: 0,
        msg: MeshMsg::Announce {
            node: "NODE-1".into(),
            network: NET_B.into(),
            hops: Some(1)
        }
    }));
    assert!(first.contains(&Send {
        iface: 1,
        msg: MeshMsg::Announce {
            node: "NODE-1".into(),
            network: NET_A.into(),
            hops: Some(1)
        }
    }));
    // A third network heard on b, 1 hop away from NODE-7: relayed on a with 2 hops.
    let net_c = "10.0.3.0/24";
    m.handle(
        Duration::from_secs(1),
        1,
        &MeshMsg::Announce {
            node: "NODE-7".into(),
            network: net_c.into(),
            hops: Some(1),
        },
    );
    let relayed: Vec<Send> = std::iter::from_fn(|| m.poll_send()).collect();
    assert_eq!(
        relayed,
        [
            // NODE-7 is new on b: it hears what NODE-1 reaches (it may have missed the
            // start-up announce).
            Send {
                iface: 1,
                msg: MeshMsg::Announce {
                    node: "NODE-1".into(),
                    network: NET_A.into(),
                    hops: Some(1)
                }
            },
            Send {
                iface: 0,
                msg: MeshMsg::Announce {
                    node: "NODE-1".into(),
                    network: net_c.into(),
                    hops: Some(2)
                }
            }
        ]
    );
    assert_eq!(m.reach(net_c, usize::MAX), Some(2));
    // The same again changes nothing, so it is not relayed again (nor answered: NODE-7 is
    // known now).
    m.handle(
        Duration::from_secs(2),
        1,
        &MeshMsg::Announce {
            node: "NODE-7".into(),
            network: net_c.into(),
            hops: Some(1),
        },
    );
    assert_eq!(m.poll_send(), None);
    // Not refreshed for the TTL (300 s): expired.
    m.handle_timeout(Duration::from_secs(302));
    assert_eq!(m.reach(net_c, usize::MAX), None);
    // At max_hops an announce is kept but not relayed.
    m.handle(
        Duration::from_secs(303),
        1,
        &MeshMsg::Announce {
            node: "NODE-8".into(),
            network: "10.9.0.0/16".into(),
            hops: Some(8),
        },
    );
    assert!(std::iter::from_fn(|| m.poll_send()).all(
        |s| !matches!(s.msg, MeshMsg::Announce { ref network, .. } if network == "10.9.0.0/16")
    ));
}

#[test]
fn with_loss_and_delay_a_gateway_is_still_elected_and_kept() {
    let mut sim = Sim::new(10);
    sim.add("NODE-3", &[NET_A, NET_B], 1);
    sim.add("NODE-2", &[NET_A, NET_B], 2);
    sim.add("NODE-1", &[NET_A, NET_B], 3);
    sim.run_for(Duration::from_secs(10), |_| {});
    let mut one = 0u32;
    let mut steps = 0u32;
    sim.run_for(Duration::from_secs(30), |s| {
        steps += 1;
        one += u32::from(s.active(NET_A, NET_B).len() == 1);
    });
    // 10 % loss can cost a heartbeat pair now and then; a gateway is there nearly always.
    assert!(
        one * 100 >= steps * 95,
        "{one} of {steps} steps with exactly one gateway"
    );
}

#[test]
fn a_node_that_missed_the_others_start_up_announce_still_agrees_on_one_gateway() {
    for late in [1, 2, 3] {
        let mut sim = Sim::new(0);
        // NODE-1 (the lower GUID) starts first; NODE-2 misses its start-up announce.
        sim.add("NODE-1", &[NET_A, NET_B], 5);
        sim.run_for(Duration::from_secs(late), |_| {});
        sim.add("NODE-2", &[NET_A, NET_B], 6);
        sim.run_for(Duration::from_secs(6), |_| {});
        sim.run_for(Duration::from_secs(20), |s| {
            assert_eq!(
                s.active(NET_A, NET_B),
                ["NODE-1"],
                "late {late} at {:?}",
                s.now
            );
            assert_eq!(
                s.active(NET_B, NET_A),
                ["NODE-1"],
                "late {late} at {:?}",
                s.now
            );
        });
        // And the other way round: the lower GUID starts last.
        let mut sim = Sim::new(0);
        sim.add("NODE-2", &[NET_A, NET_B], 5);
        sim.run_for(Duration::from_secs(late), |_| {});
        sim.add("NODE-1", &[NET_A, NET_B], 6);
        sim.run_for(Duration::from_secs(6), |_| {});
        sim.run_for(Duration::from_secs(20), |s| {
            assert_eq!(
                s.active(NET_A, NET_B).len(),
                1,
                "late {late} at {:?}",
                s.now
            );
            assert_eq!(
                s.active(NET_B, NET_A).len(),
                1,
                "late {late} at {:?}",
                s.now
            );
        });
    }
}

#[test]
fn a_gateway_that_loses_an_interface_resigns_and_does_not_take_back_when_it_returns() {
    let mut sim = Sim::new(0);
    let g1 = sim.add("NODE-1", &[NET_A, NET_B], 1);
    sim.add("NODE-2", &[NET_A, NET_B], 2);
    sim.run_for(Duration::from_secs(5), |_| {});
    assert_eq!(sim.active(NET_A, NET_B), ["NODE-1"]);
    assert_eq!(sim.active(NET_B, NET_A), ["NODE-1"]);
    // NODE-1's interface on b goes down: it resigns a -> b on a at once, and is silent on b.
    let now = sim.now;
    sim.nodes[g1].mesh.set_iface_up(now, 1, false);
    let sent: Vec<Send> = std::iter::from_fn(|| sim.nodes[g1].mesh.poll_send()).collect();
    assert_eq!(
        sent,
        [Send {
            iface: 0,
            msg: MeshMsg::Resign {
                node: "NODE-1".into(),
                network: NET_B.into()
            }
        }]
    );
    for m in sent {
        for (n, node) in sim.nodes.iter_mut().enumerate() {
            if n != g1 {
                node.mesh.handle(now, 0, &m.msg);
            }
        }
    }
    assert!(!sim.nodes[g1].mesh.forwards(0, 1) && !sim.nodes[g1].mesh.forwards(1, 0));
    sim.run_for(Duration::from_millis(400), |_| {});
    assert_eq!(sim.active(NET_A, NET_B), ["NODE-2"], "after the resign");
    sim.run_for(Duration::from_millis(3600), |_| {});
    assert_eq!(
        sim.active(NET_B, NET_A),
        ["NODE-2"],
        "after two missed heartbeats"
    );
    // Nothing is ever sent on the lost interface; the node keeps quiet there.
    assert!(sim.nodes[g1].mesh.poll_timeout().is_some());
    // Back: it announces, listens, and does not take over.
    let now = sim.now;
    sim.nodes[g1].mesh.set_iface_up(now, 1, true);
    sim.run_for(Duration::from_secs(20), |s| {
        assert_eq!(s.active(NET_A, NET_B), ["NODE-2"], "at {:?}", s.now);
        assert_eq!(s.active(NET_B, NET_A), ["NODE-2"], "at {:?}", s.now);
    });
    // A standby that loses an interface withdraws its announce instead.
    let now = sim.now;
    sim.nodes[g1].mesh.set_iface_up(now, 0, false);
    let sent: Vec<Send> = std::iter::from_fn(|| sim.nodes[g1].mesh.poll_send()).collect();
    assert_eq!(
        sent,
        [Send {
            iface: 1,
            msg: MeshMsg::Announce {
                node: "NODE-1".into(),
                network: NET_A.into(),
                hops: None
            }
        }]
    );
}

#[test]
fn a_forced_election_is_answered_once_and_keeps_the_best_gateway() {
    let mut sim = Sim::new(0);
    let g1 = sim.add("NODE-1", &[NET_A, NET_B], 1);
    let plain = sim.add("NODE-0", &[NET_A], 3);
    sim.run_for(Duration::from_secs(5), |_| {});
    assert_eq!(sim.active(NET_A, NET_B), ["NODE-1"]);
    let elect = MeshMsg::Elect {
        node: "NODE-9".into(),
        network: NET_B.into(),
    };
    let now = sim.now;
    for n in [g1, plain] {
        sim.nodes[n].mesh.handle(now, 0, &elect);
        let elects: Vec<Send> = std::iter::from_fn(|| sim.nodes[n].mesh.poll_send())
            .filter(|s| matches!(s.msg, MeshMsg::Elect { .. }))
            .collect();
        assert_eq!(elects.len(), 1, "node {n} answers with its own elect");
        assert_eq!(elects[0].iface, 0);
        // Again at once: not answered again.
        sim.nodes[n].mesh.handle(now + STEP, 0, &elect);
        assert!(std::iter::from_fn(|| sim.nodes[n].mesh.poll_send())
            .all(|s| !matches!(s.msg, MeshMsg::Elect { .. })));
    }
    // The gateway was still the best candidate: it kept its role.
    sim.run_for(Duration::from_secs(10), |s| {
        assert_eq!(s.active(NET_A, NET_B), ["NODE-1"], "at {:?}", s.now);
    });
}

#[test]
fn two_gateways_that_missed_each_others_announces_settle_by_guid() {
    // Each became active alone (the other's announces never arrived).
    let mut one = Mesh::new(cfg("NODE-1", &[NET_A, NET_B]), 1, Duration::ZERO);
    let mut two = Mesh::new(cfg("NODE-2", &[NET_A, NET_B]), 2, Duration::ZERO);
    for m in [&mut one, &mut two] {
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(4) {
            m.handle_timeout(t);
            t += STEP;
        }
        while m.poll_send().is_some() {}
        assert_eq!(m.role(0, NET_B), Some(Role::Active));
    }
    // Now each hears the other's heartbeat on segment a.
    let now = Duration::from_secs(4);
    let hb = |node: &str| MeshMsg::Heartbeat {
        node: node.into(),
        network: NET_B.into(),
    };
    two.handle(now, 0, &hb("NODE-1"));
    one.handle(now, 0, &hb("NODE-2"));
    assert_eq!(
        two.role(0, NET_B),
        Some(Role::Standby),
        "the higher GUID steps back"
    );
    assert_eq!(
        one.role(0, NET_B),
        Some(Role::Active),
        "the lower GUID stays"
    );
}
