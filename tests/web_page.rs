//! The status page end to end: the real daemon on a simulated JBD pack and a private
//! dbus-daemon, the page rendered by headless Chromium (`apt-get install chromium`; `.ci/run`
//! installs it), and hostile HTTP clients.
//!
//! The oracle is never the page's own code: the cells are checked against the simulator's cell
//! voltages and D-Bus `/Voltages/Cell*`, the limits and their reasons against D-Bus `/Info/*`,
//! and "lost" against the moment the simulator was silenced and `[daemon] stale_after_s`.

mod support;

use bms_bridge::config::Protocol;
use bms_bridge::sim;
use bms_bridge::victron::private_bus::PrivateBus;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::daemon::*;

/// A TCP port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `[daemon] stale_after_s` of `start_daemon_with`.
const STALE_AFTER: Duration = Duration::from_secs(2);

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The DOM after the page's script ran (its first fetches), as Chromium serialises it.
fn dump_dom(browser: &PathBuf, url: &str) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=1500",
            "--dump-dom",
            url,
        ])
        .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the first element after `marker` (up to its closing tag).
fn text_after<'a>(dom: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &dom[dom.find(marker)? + marker.len()..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(&rest[..rest.find('<')?])
}

/// `(cell number, data-v)` of every cell bar.
fn cells(dom: &str) -> Vec<(usize, f64)> {
    dom.match_indices("data-cell=\"")
        .filter_map(|(i, m)| {
            let rest = &dom[i + m.len()..];
            let n = rest[..rest.find('"')?].parse().ok()?;
            let v = rest.split("data-v=\"").nth(1)?;
            Some((n, v[..v.find('"')?].parse().ok()?))
        })
        .collect()
}

/// The value and reason cells of a limit row (`cvl`, `ccl`, `dcl`).
fn limit(dom: &str, key: &str) -> (String, String) {
    let row = &dom[dom.find(&format!("data-limit=\"{key}\"")).unwrap_or_else(|| panic!("no {key} row"))..];
    let value = text_after(row, "class=\"value\"").unwrap_or_default().to_owned();
    let reason = text_after(row, "class=\"reason\"").unwrap_or_default().to_owned();
    (value, reason)
}

fn text_of(items: &Items, path: &str) -> String {
    String::try_from(value(items, path).clone()).unwrap_or_default()
}

fn start(name: &str, web_port: u16) -> (PathBuf, PrivateBus, sim::PtySimulator, Daemon) {
    let dir = scratch_dir(name);
    let bus = PrivateBus::start().expect("dbus-daemon (apt-get install -y dbus)");
    let sim = sim::spawn(Protocol::Jbd, &[], 16).unwrap();
    sim.control().set_frozen(true);
    let link = dir.join("ttyBMS0");
    link_pty(&link, sim.path());
    let extra = format!("\n[web]\nlisten = \"127.0.0.1:{web_port}\"\n");
    let daemon = start_daemon_with(&dir, bus.address(), &link, Protocol::Jbd, &[], &extra);
    (dir, bus, sim, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_dbus_cells_limits_and_reasons_and_a_silenced_bms_as_lost() {
    let Some(browser) = chromium() else {
        // CI installs Chromium: a missing browser there is a failure, not a skip.
        assert!(std::env::var_os("CI").is_none(), "CI=true but no chromium: .ci/run must install it");
        eprintln!("SKIPPED: no chromium (apt-get install -y chromium; .ci/run installs it)");
        return;
    };
    let port = free_port();
    let (dir, bus, sim, _daemon) = start("web-page", port);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    let items = wait_for(&conn, Duration::from_secs(15), "the service to connect", connected).await;
    let url = format!("http://127.0.0.1:{port}/");

    // 1. Every cell, the limits and the reasons, as on D-Bus (the pack is frozen: no drift).
    let dom = dump_dom(&browser, &url);
    assert!(dom.contains("data-status=\"online\""), "online battery expected:\n{dom}\n{}", daemon_log(&dir));
    let shown = cells(&dom);
    let pack_mv = sim.pack(None).unwrap().cell_voltages_mv();
    assert_eq!(shown.len(), 16, "{dom}");
    for (n, v) in &shown {
        let dbus = f64_of(value(&items, &format!("/Voltages/Cell{n}"))).unwrap();
        assert!((v - dbus).abs() < 1e-9, "cell {n}: page {v}, D-Bus {dbus}");
        assert!(
            (v - f64::from(pack_mv[n - 1]) / 1000.0).abs() < 1e-9,
            "cell {n}: page {v}, pack {} mV",
            pack_mv[n - 1]
        );
    }
    let cvl = f64_of(value(&items, "/Info/MaxChargeVoltage")).unwrap();
    let ccl = f64_of(value(&items, "/Info/MaxChargeCurrent")).unwrap();
    let dcl = f64_of(value(&items, "/Info/MaxDischargeCurrent")).unwrap();
    assert_eq!(limit(&dom, "cvl"), (format!("{cvl:.2} V"), text_of(&items, "/Info/ChargeMode")));
    assert_eq!(limit(&dom, "ccl"), (format!("{ccl:.1} A"), text_of(&items, "/Info/ChargeLimitation")));
    assert_eq!(limit(&dom, "dcl"), (format!("{dcl:.1} A"), text_of(&items, "/Info/DischargeLimitation")));
    assert!(!text_of(&items, "/Info/ChargeLimitation").is_empty(), "a reason to compare");
    let soc = f64_of(value(&items, "/Soc")).unwrap();
    let soc_shown = dom.split("data-field=\"soc\"").nth(1).and_then(|r| text_after(r, "<b"));
    assert_eq!(soc_shown, Some(format!("{soc:.1} %").as_str()));

    // 2. Silenced: the page says lost within the grace period (plus one page and one daemon poll
    // interval and Chromium's start), shows no cell any more, and CCL 0 as D-Bus does.
    sim.control().set_silent(true);
    let silenced = Instant::now();
    let dom = loop {
        let dom = dump_dom(&browser, &url);
        if dom.contains("data-status=\"lost\"") {
            break dom;
        }
        assert!(silenced.elapsed() < STALE_AFTER * 3, "never shown lost:\n{dom}");
    };
    let shown_after = silenced.elapsed();
    eprintln!("silenced BMS shown lost on the page after {shown_after:?} (stale_after_s {STALE_AFTER:?})");
    assert!(
        shown_after >= STALE_AFTER,
        "lost after {shown_after:?}, before the grace period: not the BMS's state"
    );
    assert!(shown_after < STALE_AFTER + Duration::from_millis(2500), "lost shown only after {shown_after:?}");
    assert!(cells(&dom).is_empty(), "a lost BMS's cells must not be shown as live:\n{dom}");
    let items = get_items(&conn).await.unwrap();
    assert_eq!(f64_of(value(&items, "/Info/MaxChargeCurrent")), Some(0.0));
    assert_eq!(limit(&dom, "ccl").0, "0.0 A");
    assert_eq!(limit(&dom, "ccl").1, text_of(&items, "/Info/ChargeLimitation"));
    assert!(dom.contains("LOST"), "said in words");
}

/// One raw request; the response (status line first), or "" when the server closed silently.
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clean_errors_and_polling_goes_on() {
    use bms_bridge::web::http::{HEAD_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES};
    let port = free_port();
    let (dir, bus, _sim, _daemon) = start("web-hostile", port);
    let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
    wait_for(&conn, Duration::from_secs(15), "the service to connect", connected).await;
    let status = |r: &str| r.lines().next().unwrap_or("").to_owned();

    assert_eq!(status(&raw(port, b"GET /api/state HTTP/1.1\r\nHost: x\r\n\r\n")), "HTTP/1.1 200 OK");
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100_000));
    assert_eq!(status(&raw(port, long.as_bytes())), "HTTP/1.1 414 URI Too Long");
    let headers = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(MAX_HEAD_BYTES / 20)
    );
    assert_eq!(status(&raw(port, headers.as_bytes())), "HTTP/1.1 431 Request Header Fields Too Large");
    for path in ["/nope", "/../../etc/passwd", "/%2e%2e/Cargo.toml", "/app.js/../../src/main.rs"] {
        let r = raw(port, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(status(&r), "HTTP/1.1 404 Not Found", "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT"] {
        let r =
            raw(port, format!("{method} /api/state HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").as_bytes());
        assert_eq!(status(&r), "HTTP/1.1 405 Method Not Allowed", "{method}");
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
    }
    let tls = raw(port, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n");
    assert_eq!(status(&tls), "HTTP/1.1 400 Bad Request", "a TLS hello");
    let head = raw(port, b"HEAD /api/state HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"), "HEAD: no body: {head}");
    let csv = raw(port, b"GET /api/history?hours=99 HTTP/1.1\r\n\r\n");
    assert_eq!(status(&csv), "HTTP/1.1 400 Bad Request");

    // Slowloris: more connections than allowed, each sending a byte now and then, never ending
    // the head. The extra ones are refused at once (503); the others get 408 at HEAD_TIMEOUT.
    let attackers: Vec<_> = (0..MAX_CONNECTIONS + 4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let begun = Instant::now();
                let mut out = Vec::new();
                for b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().chain([b'a'; 60].iter()) {
                    // Listen first (a refused connection is told at once), then one more byte.
                    let mut buf = [0u8; 512];
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                    if !out.is_empty() {
                        let _ = s.read_to_end(&mut out);
                        break;
                    }
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                }
                (String::from_utf8_lossy(&out).into_owned(), begun.elapsed())
            })
        })
        .collect();
    // Meanwhile the BMS is polled as before: /Connected stays 1 for the whole attack (a stalled
    // poll loop would be lost after stale_after_s = 2 s) and the readings keep coming.
    let attack = Instant::now();
    while attack.elapsed() < HEAD_TIMEOUT + Duration::from_secs(1) {
        let items = get_items(&conn).await.unwrap();
        assert!(connected(&items), "polling disturbed during the attack:\n{}", daemon_log(&dir));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let results: Vec<(String, Duration)> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    let busy = results.iter().filter(|(r, _)| r.starts_with("HTTP/1.1 503")).count();
    let timed_out: Vec<&Duration> =
        results.iter().filter(|(r, _)| r.starts_with("HTTP/1.1 408")).map(|(_, t)| t).collect();
    assert_eq!((busy, timed_out.len()), (4, MAX_CONNECTIONS), "{results:?}");
    for t in timed_out {
        assert!(
            *t >= HEAD_TIMEOUT - Duration::from_millis(500) && *t < HEAD_TIMEOUT + Duration::from_secs(1),
            "408 after {t:?}"
        );
    }
    // And the page is served again.
    assert_eq!(status(&raw(port, b"GET / HTTP/1.1\r\n\r\n")), "HTTP/1.1 200 OK");
    let log = daemon_log(&dir);
    assert!(!log.contains("panicked"), "{log}");
}
