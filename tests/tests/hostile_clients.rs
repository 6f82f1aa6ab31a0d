//! The master under hostile clients: slow senders of headers (slowloris) are cut, a
//! flood of connections past the cap is refused with 503 and Retry-After, too many
//! notice streams likewise, while an established client stays served and new clients
//! get in again once the flood is gone. The terminal server shares the same accept loop
//! (`lotsync::serve::serve`).

use std::time::Duration;

use lotsync::serve::Limits;
use mock_master::Master;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Only a hang fails a test.
const HANG: Duration = Duration::from_secs(30);

async fn master(limits: Limits) -> Master {
    Master::builder()
        .in_memory()
        .heartbeat(Duration::from_millis(200))
        .limits(limits)
        .start()
        .await
        .unwrap()
}

fn addr(master: &Master) -> String {
    master.url().trim_start_matches("http://").to_owned()
}

/// Read until the peer closes; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(HANG, stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_and_others_stay_served() {
    let master = master(Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr(&master)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Trickle one more header line now and then: the deadline is for the whole head.
    let trickle = async {
        for _ in 0..5 {
            for stream in &mut slow {
                let _ = stream.write_all(b"X-Slow: 1\r\n").await;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let client = reqwest::Client::new();
    let (_, health) = tokio::join!(
        trickle,
        client.get(format!("{}/healthz", master.url())).send()
    );
    assert_eq!(
        health.unwrap().status(),
        200,
        "a normal client is served meanwhile"
    );
    for stream in &mut slow {
        let answer = read_to_close(stream).await;
        assert!(
            !answer.contains("200 OK"),
            "a request whose head never ended was answered: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_past_the_cap_is_refused_and_clears() {
    let master = master(Limits {
        max_connections: 20,
        // Long enough that the flood is still there while the extra connections are
        // tried, even on a slow machine; short enough to see it cleared.
        header_read_timeout: Duration::from_secs(8),
        ..Limits::default()
    })
    .await;
    // An established client: one keep-alive connection, opened before the flood.
    let established = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let health = format!("{}/healthz", master.url());
    assert_eq!(established.get(&health).send().await.unwrap().status(), 200);
    // The flood: idle connections up to the cap, then more.
    let mut idle = Vec::new();
    for _ in 0..19 {
        idle.push(TcpStream::connect(addr(&master)).await.unwrap());
    }
    let mut refused = 0;
    for _ in 0..10 {
        let mut extra = TcpStream::connect(addr(&master)).await.unwrap();
        let answer = read_to_close(&mut extra).await;
        if answer.starts_with("HTTP/1.1 503") {
            assert!(
                answer.to_ascii_lowercase().contains("retry-after: 1"),
                "{answer}"
            );
            assert!(answer.contains("overloaded"), "{answer}");
            refused += 1;
        }
    }
    assert_eq!(refused, 10, "every connection past the cap is refused");
    assert_eq!(
        established.get(&health).send().await.unwrap().status(),
        200,
        "the established client is still served"
    );
    // Idle connections that never send a request are cut, and new clients get in.
    for stream in &mut idle {
        read_to_close(stream).await;
    }
    let fresh = reqwest::Client::new();
    assert_eq!(fresh.get(&health).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notice_streams_past_the_cap_get_503() {
    let master = master(Limits {
        max_streams: 3,
        ..Limits::default()
    })
    .await;
    let client = reqwest::Client::new();
    let open = || {
        client
            .get(format!("{}/v1/notices", master.url()))
            .bearer_auth(master.terminal_token())
            .send()
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let response = open().await.unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // A stream closed gives its place back.
    drop(held.pop());
    let again = tokio::time::timeout(HANG, async {
        loop {
            let response = open().await.unwrap();
            if response.status() == 200 {
                return response;
            }
            // The server notices the closed stream at its next write (a heartbeat).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a place came free");
    assert_eq!(again.status(), 200);
}
