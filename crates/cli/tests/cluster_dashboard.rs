//! The live dashboard: `GET /v1/cluster/status` over plain HTTP, and the page at
//! `/` in headless Chromium following a fail-over (the leader killed while a
//! follower's dashboard is open). Screenshots go to
//! `<target>/tmp/dashboard-screenshots/`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::chromium::Chromium;
use common::workload::{LEADER_TIMEOUT, write_keys};
use common::{TestCluster, eventually, http};
use keel_client::Client;
use serde_json::Value;
use tokio::task::JoinHandle;

/// How long the page may take to show what the cluster did (it polls once a
/// second; an election takes up to two election timeouts).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` on `addr`, as JSON.
fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, _, body) = http(addr, "GET", path, &[], b"");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (code, json)
}

fn member(status: &Value, id: u64) -> &Value {
    status["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("no member {id} in {status:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_reports_every_member_and_this_nodes_history() {
    let mut t = TestCluster::start(3);
    let first = t.wait_for_leader(LEADER_TIMEOUT).await;
    write_keys(&t, "s", 0..50, 8).await;
    let down = (1..=3).find(|&id| id != first).expect("a follower");
    let up = (1..=3)
        .find(|&id| id != first && id != down)
        .expect("another");
    t.cluster.kill(down).expect("kill");
    let addr = t.cluster.http_addr(up);

    // The killed member shows as unreachable, with the reason, and the answer
    // still comes (it does not wait on the dead node). The leader is whoever
    // leads by then (usually `first`; a loaded machine may see an election).
    let s = eventually(
        Duration::from_secs(10),
        "status with the member down",
        || async move {
            let (code, s) = get_json(addr, "/v1/cluster/status");
            assert_eq!(code, 200, "{s:#}");
            // The surviving follower may still be catching up: the writes
            // could commit with the leader and the member now down.
            let caught_up = s["members"]
                .as_array()?
                .iter()
                .filter(|m| m["id"] != down)
                .all(|m| m["commit_index"].as_u64() >= Some(51));
            (member(&s, down)["reachable"] == false
                && s["leader_id"] != 0
                && caught_up
                && !s["throughput"].as_array()?.is_empty())
            .then_some(s)
        },
    )
    .await;
    assert_eq!(s["node_id"], up);
    let leader = s["leader_id"].as_u64().expect("leader id");
    assert_ne!(leader, down, "{s:#}");
    assert_eq!(s["members"].as_array().map(Vec::len), Some(3));
    let dead = member(&s, down);
    assert!(
        dead["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{dead:#}"
    );
    assert!(dead["role"].is_null() && dead["lag"].is_null(), "{dead:#}");
    for id in [leader, up] {
        let m = member(&s, id);
        assert_eq!(m["reachable"], true, "{m:#}");
        assert!(m["commit_index"].as_u64() >= Some(51), "{m:#}");
        assert!(m["lag"].is_u64() && m["match_index"].is_u64(), "{m:#}");
        assert!(m["http_address"].is_string(), "{m:#}");
    }
    assert_eq!(member(&s, leader)["role"], "leader");
    // This node saw the leader elected, and says so in its events.
    let last_change = s["leader_changes"]
        .as_array()
        .and_then(|c| c.last())
        .expect("a leader change");
    assert_eq!(last_change["leader_id"], leader, "{s:#}");
    assert_eq!(last_change["term"], s["term"]);
    let events: Vec<&str> = s["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    let learned = if leader == up {
        format!("Node {up} became the leader for term {}", s["term"])
    } else {
        format!("Node {up} is following Node {leader} in term {}", s["term"])
    };
    assert!(
        events.iter().any(|e| e.contains(&learned)),
        "no {learned:?} in {events:#?}"
    );
    let sample = &s["throughput"][0];
    assert!(sample["writes_per_sec"].is_number() && sample["applied_index"].is_u64());
    assert_eq!(s["sample_interval_ms"], 1000);

    // The number of events is the caller's, within the ring's bound.
    let (_, two) = get_json(addr, "/v1/cluster/status?events=2");
    assert!(two["events"].as_array().is_some_and(|e| e.len() <= 2));
    let (code, err) = get_json(addr, "/v1/cluster/status?events=many");
    assert_eq!(
        (code, err["kind"].as_str()),
        (400, Some("invalid_argument"))
    );

    // The page itself: HTML, self-contained, locked down.
    let (code, head, body) = http(addr, "GET", "/", &[], b"");
    let head = head.to_ascii_lowercase();
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("/v1/cluster/status"));
    // The API around it is unchanged.
    let (code, missing) = get_json(addr, "/no/such/route");
    assert_eq!((code, missing["kind"].as_str()), (404, Some("not_found")));
    t.assert_no_panics();
}

/// What the page shows, read from its DOM (`null` while it loads).
const READ_PAGE: &str = r##"(() => {
  const connection = document.getElementById("connection");
  if (!connection) return null; // still loading
  const leader = document.getElementById("leader-id");
  const rows = [...document.querySelectorAll("#members tr")].map((r) => ({
    id: Number(r.dataset.memberId),
    reachable: r.dataset.reachable === "true",
    text: r.innerText,
  }));
  const list = (id) => [...document.querySelectorAll("#" + id + " li")].map((li) => li.innerText);
  return {
    live: connection.className === "live",
    leader: leader ? Number(leader.textContent) : 0,
    leader_card: document.getElementById("leader").innerText,
    rows,
    leader_changes: list("leader-changes"),
    events: list("events"),
    sparkline: document.querySelector("#sparkline polyline") !== null,
    // Laid out (visible), or not.
    token_form_shown: document.getElementById("token-form").offsetParent !== null,
    groups_shown: document.getElementById("groups-section").offsetParent !== null,
    groups: [...document.querySelectorAll("#groups tr")].map((r) => ({
      group: Number(r.dataset.group),
      leader: Number(r.dataset.leaderId),
    })),
  };
})()"##;

/// Prints `line` on stderr even when the test harness captures output (it
/// captures only the print macros), so CI's log says where the screenshots are.
fn announce(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Where screenshots go: `<target>/tmp/dashboard-screenshots/NAME.png`.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("dashboard-screenshots")
        .join(format!("{name}.png"))
}

/// Reads the page until `check` accepts what it shows (it polls its node once a
/// second), or panics after [`PAGE_TIMEOUT`] with what it showed last.
async fn wait_for_page<T>(
    browser: &mut Chromium,
    what: &str,
    mut check: impl FnMut(&Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let page = browser.eval(READ_PAGE).await.expect("read the page");
        if let Some(v) = check(&page) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PAGE_TIMEOUT:?} waiting for the page to show {what}; it shows {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(page: &Value, id: u64) -> Option<&Value> {
    page["rows"].as_array()?.iter().find(|r| r["id"] == id)
}

/// Writes a key every 20 ms (at most 3,000) until `stop`, so the throughput
/// sparkline has something to draw; writes that fail while the leader is down
/// are expected and not retried. Returns how many were acknowledged.
fn background_writes(client: Client, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let client = client.with_deadline(Duration::from_secs(2));
    tokio::spawn(async move {
        let mut acked = 0;
        for i in 0..3_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if client.put(format!("bg{i}"), "v").await.is_ok() {
                acked += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium_follows_the_leader_through_a_failover() {
    let mut t = TestCluster::start(3);
    let first = t.wait_for_leader(LEADER_TIMEOUT).await;
    // Something for the throughput sparkline.
    write_keys(&t, "dash", 0..300, 32).await;
    let stop_writes = Arc::new(AtomicBool::new(false));
    let writer = background_writes(t.client.clone(), stop_writes.clone());
    let ip = t.cluster.http_addr(1).ip();
    let mut browser = Chromium::launch(ip).await;

    // Open a follower's dashboard and wait until it shows a leader other than
    // itself (should leadership move to the page's node meanwhile, open another).
    let mut page_node = (1..=3).find(|&id| id != first).expect("a follower");
    let old = loop {
        let url = format!("http://{}/", t.cluster.http_addr(page_node));
        browser.navigate(&url).await.expect("open the dashboard");
        let page = wait_for_page(&mut browser, "a leader", |page| {
            let ready = page["live"] == true
                && page["leader"].as_u64().is_some_and(|l| l != 0)
                && page["sparkline"] == true
                && page["rows"].as_array().is_some_and(|r| r.len() == 3);
            ready.then(|| page.clone())
        })
        .await;
        let shown = page["leader"].as_u64().expect("leader id");
        // No token asked of a cluster without one; no groups table while
        // group 1 is the only group (its row is there, hidden).
        assert_eq!(
            (&page["token_form_shown"], &page["groups_shown"]),
            (&Value::Bool(false), &Value::Bool(false)),
            "{page:#}"
        );
        assert_eq!(page["groups"][0]["group"], 1, "{page:#}");
        if shown != page_node {
            let r = row(&page, shown).expect("the leader's row");
            assert!(
                r["text"].as_str().is_some_and(|t| t.contains("leader")),
                "{page:#}"
            );
            break shown;
        }
        page_node = (1..=3).find(|&id| id != shown).expect("another node");
    };
    let before = screenshot_path("1-leader");
    browser.screenshot(&before).await.expect("screenshot");
    announce(&format!(
        "dashboard screenshot (node {old} leads): {}",
        before.display()
    ));

    // Kill the leader; the open page must show a new one, and the old one down.
    t.cluster.kill(old).expect("kill the leader");
    let page = wait_for_page(&mut browser, "a new leader and the old one down", |page| {
        let new = page["leader"].as_u64().filter(|&l| l != 0 && l != old)?;
        let gone = row(page, old)?;
        let down =
            gone["reachable"] == false && gone["text"].as_str().is_some_and(|t| t.contains("down"));
        // The page's node saw the new leader and lists the change.
        let listed = page["leader_changes"]
            .as_array()?
            .first()?
            .as_str()?
            .contains(&format!("Node {new} leads"));
        (page["live"] == true && down && listed).then(|| page.clone())
    })
    .await;
    let new = page["leader"].as_u64().expect("new leader");
    assert!(
        page["leader_card"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("Node {new}"))),
        "{page:#}"
    );
    assert!(
        page["events"].as_array().is_some_and(|e| !e.is_empty()),
        "no events on the page: {page:#}"
    );
    let after = screenshot_path("2-failover");
    browser.screenshot(&after).await.expect("screenshot");
    announce(&format!(
        "dashboard screenshot (node {old} killed, node {new} leads): {}",
        after.display()
    ));

    // Text from the cluster is shown as text: an event that looks like markup
    // is rendered verbatim and creates no element.
    let injected = browser
        .eval(
            r#"(() => {
  window.keelDashboard.render({
    cluster_id: "<b>c</b>", node_id: 1, time_ms: Date.now(), leader_id: 1, term: 1,
    members: [{ id: 1, address: "<img src=x onerror=window.pwned=1>", voter: true,
                reachable: false, error: "<img src=x onerror=window.pwned=1>" }],
    leader_changes: [], throughput: [], sample_interval_ms: 1000,
    events: [{ seq: 1, time_ms: Date.now(), text: "<img src=x onerror=window.pwned=1><script>window.pwned=1</script>" }],
  });
  return {
    images: document.querySelectorAll("main img, header b").length,
    scripts: document.querySelectorAll("script").length,
    shown: document.getElementById("events").innerText,
  };
})()"#,
        )
        .await
        .expect("render crafted data");
    assert_eq!(injected["images"], 0, "{injected:#}");
    assert_eq!(injected["scripts"], 1, "{injected:#}");
    assert!(
        injected["shown"]
            .as_str()
            .is_some_and(|s| s.contains("<img src=x onerror=window.pwned=1><script>")),
        "{injected:#}"
    );
    drop(browser);
    stop_writes.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(acked > 0, "no background write was acknowledged");
    t.assert_no_panics();
}
