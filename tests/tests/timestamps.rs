//! The cluster's timestamp oracle, driven through the public `Txn.Timestamps` call of
//! every node: timestamps are unique and rise in real-time order (one asked for after
//! another was returned is larger), also across a kill -9 of the meta range's leader,
//! which serves them, and after it restarts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_tests::{TestCluster, FAST_ELECTIONS};

/// One call: when it was sent, when it returned, and the timestamps it got.
#[derive(Debug, Clone, Copy)]
struct Call {
    invoked: Instant,
    returned: Instant,
    first: u64,
    count: u64,
}

/// Checks that no two calls share a timestamp and that every call returned before
/// another was sent got smaller timestamps than it.
fn check_real_time_order(calls: &[Call]) {
    let mut all: Vec<(u64, u64)> = calls.iter().map(|c| (c.first, c.count)).collect();
    all.sort();
    for w in all.windows(2) {
        assert!(
            w[0].0 + w[0].1 <= w[1].0,
            "timestamps {:?} and {:?} overlap",
            w[0],
            w[1]
        );
    }
    let mut by_return: Vec<&Call> = calls.iter().collect();
    by_return.sort_by_key(|c| c.returned);
    let mut by_invoke: Vec<&Call> = calls.iter().collect();
    by_invoke.sort_by_key(|c| c.invoked);
    // Sweep: the largest timestamp among calls that returned before each call began.
    let (mut done, mut max_before) = (0, None::<(u64, Instant)>);
    for c in by_invoke {
        while done < by_return.len() && by_return[done].returned < c.invoked {
            let r = by_return[done];
            let last = r.first + r.count - 1;
            if max_before.is_none_or(|(m, _)| last > m) {
                max_before = Some((last, r.returned));
            }
            done += 1;
        }
        if let Some((m, at)) = max_before {
            assert!(
                c.first > m,
                "a call sent {:?} after another returned timestamp {m} got {}",
                c.invoked.duration_since(at),
                c.first
            );
        }
    }
}

/// The wall clock's millisecond at `t` (close enough: taken now, minus the time since).
fn wall_ms_at(t: Instant) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.saturating_sub(t.elapsed())).as_millis() as u64
}

/// Six callers through `nodes`, asking for timestamps for `for_how_long`.
fn callers(
    c: &TestCluster,
    nodes: &[usize],
    calls: &Arc<Mutex<Vec<Call>>>,
    for_how_long: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for w in 0..6usize {
        let client = c.client_via(nodes[w % nodes.len()]);
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            let stop = Instant::now() + for_how_long;
            let mut n = 0u64;
            while Instant::now() < stop {
                // Half the callers take big blocks: the oracle runs ahead of the wall
                // clock, so a new leader that started from its own clock instead of the
                // persisted mark would give timestamps already given.
                let count = if w % 2 == 0 { 65_536 } else { 1 + (n % 4) * 10 };
                let invoked = Instant::now();
                // A failed call (the oracle's node just died) got nothing.
                if let Ok(first) = client.timestamps(count).await {
                    let returned = Instant::now();
                    calls.lock().unwrap().push(Call {
                        invoked,
                        returned,
                        first,
                        count,
                    });
                }
                n += 1;
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timestamps_rise_in_real_time_order_across_a_kill_of_the_oracles_node() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(10)).await.unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    for t in callers(&c, &[0, 1, 2], &calls, Duration::from_secs(2)) {
        t.await.unwrap();
    }
    let before = calls.lock().unwrap().len();
    assert!(before > 100, "only {before} calls answered in 2 s");

    // The oracle's node dies while the calls go on through the others.
    let during = callers(&c, &survivors, &calls, Duration::from_secs(4));
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill9(leader);
    for t in during {
        t.await.unwrap();
    }
    let new_leader = c
        .wait_leader_among(&survivors, Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    // ...and comes back: its clock asks the new leader.
    c.restart(leader).unwrap();
    for t in callers(&c, &[leader, new_leader], &calls, Duration::from_secs(2)) {
        t.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    let after_kill = calls.len() - before;
    assert!(
        after_kill > 100,
        "only {after_kill} calls answered after the kill"
    );
    check_real_time_order(&calls);
    let ahead = calls
        .iter()
        .map(|c| (c.first >> 18).saturating_sub(wall_ms_at(c.returned)))
        .max()
        .unwrap_or(0);
    eprintln!(
        "{} calls ({before} before the kill); the oracle ran up to {ahead} ms ahead of the wall clock",
        calls.len()
    );
    // A timestamp tells the wall clock's millisecond it was taken in.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let last = calls.iter().map(|c| c.first).max().unwrap();
    let last_ms = last >> 18;
    assert!(
        last_ms.abs_diff(now_ms) < 600_000,
        "timestamp {last} says {last_ms} ms; the wall clock says {now_ms}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_count_outside_the_limits_is_refused_with_a_stable_code() {
    let c = TestCluster::start_initialized(1, FAST_ELECTIONS)
        .await
        .unwrap();
    let client = c.client();
    for bad in [0, 65_537] {
        let e = client.timestamps(bad).await.unwrap_err();
        assert_eq!(e.code(), Some("INVALID_ARGUMENT"), "{e}");
    }
    let a = client.timestamps(65_536).await.unwrap();
    let b = client.timestamp().await.unwrap();
    assert!(b >= a + 65_536, "{a} then {b}");
}

#[test]
fn the_real_time_check_rejects_a_timestamp_below_an_earlier_answer() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let call = |i, r, first| Call {
        invoked: at(i),
        returned: at(r),
        first,
        count: 1,
    };
    // Overlapping calls may come back in any order.
    check_real_time_order(&[call(0, 10, 5), call(1, 9, 4)]);
    let stale = std::panic::catch_unwind(|| {
        check_real_time_order(&[call(0, 10, 5), call(11, 12, 4)]);
    });
    assert!(stale.is_err(), "a smaller timestamp after an answer passed");
    let dup = std::panic::catch_unwind(|| {
        check_real_time_order(&[
            call(0, 1, 5),
            Call {
                count: 3,
                ..call(0, 1, 3)
            },
        ]);
    });
    assert!(dup.is_err(), "overlapping timestamps passed");
}

/// The nemesis the persisted mark is for: the oracle's node has a clock 30 s ahead,
/// every other node a true one. When it dies, a leader that started from its own
/// clock would hand out timestamps 30 s below those already given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_oracle_starts_above_an_old_one_whose_clock_ran_ahead() {
    let mut c = TestCluster::start_initialized(3, FAST_ELECTIONS)
        .await
        .unwrap();
    let wait = Duration::from_secs(20);
    // Every node's clock 30 s ahead (a rolling restart, quorum kept throughout).
    for i in 0..3 {
        c.kill9(i);
        c.nodes[i].env = vec![("SHOAL_CLOCK_SKEW_MS".into(), "30000".into())];
        c.restart(i).unwrap();
        c.wait_leader(wait).await.unwrap();
    }
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let ahead = c.wait_leader(wait).await.unwrap();
    for t in callers(&c, &[0, 1, 2], &calls, Duration::from_secs(1)) {
        t.await.unwrap();
    }
    // The followers' clocks put right; the leader keeps its own.
    for i in (0..3).filter(|&i| i != ahead) {
        c.kill9(i);
        c.nodes[i].env.clear();
        c.restart(i).unwrap();
        c.wait_leader(wait).await.unwrap();
    }
    let leader = c.wait_leader(wait).await.unwrap();
    assert_eq!(leader, ahead, "the leadership moved during the restarts");
    for t in callers(&c, &[0, 1, 2], &calls, Duration::from_secs(1)) {
        t.await.unwrap();
    }
    let given = calls.lock().unwrap().len();
    c.kill9(ahead);
    let others: Vec<usize> = (0..3).filter(|&i| i != ahead).collect();
    c.wait_leader_among(&others, wait).await.unwrap();
    for t in callers(&c, &others, &calls, Duration::from_secs(2)) {
        t.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.len() > given + 50,
        "only {} calls answered by the new leader",
        calls.len() - given
    );
    check_real_time_order(&calls);
}
