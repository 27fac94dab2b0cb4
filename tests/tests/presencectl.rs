//! `presencectl`, the built binary, against a real cluster whose gRPC API
//! requires bearer tokens: tables, `--json`, live `watch`, registrations,
//! and the errors a user sees.

use std::process::Stdio;
use std::time::Duration;

use cluster_tests::cluster::Cluster;
use cluster_tests::process::binary;
use cluster_tests::ua::Ua;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Generous: the machine is shared and loaded.
const LINE_WAIT: Duration = Duration::from_secs(20);

struct Ctl {
    presence_url: String,
    registrar_url: String,
}

/// What one run printed, and whether it succeeded.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ctl {
    fn command(&self, token: Option<&str>, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary("presencectl"));
        command
            .args(["--presence-url", &self.presence_url])
            .args(["--registrar-url", &self.registrar_url])
            .args(args)
            .env_remove("PRESENCE_TOKEN")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = token {
            // The environment variable, as a script would set it.
            command.env("PRESENCE_TOKEN", token);
        }
        command
    }

    async fn run(&self, token: Option<&str>, args: &[&str]) -> Run {
        let output = tokio::time::timeout(LINE_WAIT, self.command(token, args).output())
            .await
            .expect("presencectl finishes in time")
            .expect("presencectl runs");
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn json(&self, token: Option<&str>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.run(token, &all).await;
        assert!(run.ok, "{}", run.stderr);
        serde_json::from_str(&run.stdout).expect("JSON output")
    }
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

async fn next_line(lines: &mut Lines) -> String {
    tokio::time::timeout(LINE_WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("readable")
        .expect("watch still running")
}

async fn next_json(lines: &mut Lines) -> Value {
    serde_json::from_str(&next_line(lines).await).expect("one JSON object per line")
}

/// The cells of the table row whose first cell is `key`.
fn row<'a>(table: &'a str, key: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&key))
        .unwrap_or_else(|| panic!("no row {key} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presencectl_drives_the_api() {
    let cluster = Cluster::start_authenticated(1);
    let ctl = Ctl {
        presence_url: cluster.presence_url(),
        registrar_url: cluster.registrar_url(),
    };
    let admin = cluster.tokens.api_token(&["presence:admin"]);
    let read = cluster.tokens.api_token(&["presence:read"]);
    let admin = Some(admin.as_str());

    // set: a table with the new version.
    let run = ctl
        .run(
            admin,
            &[
                "set",
                "alice@example.com",
                "in-meeting",
                "--note",
                "Budget review",
                "--source",
                "calendar",
            ],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.starts_with("PRESENTITY"), "{}", run.stdout);
    let cells = row(&run.stdout, "alice@example.com");
    assert_eq!(cells[1], "calendar");
    let version: u64 = cells[2].parse().expect("version");

    // get: one or several, as a table or JSON.
    let run = ctl
        .run(admin, &["get", "alice@example.com", "bob@example.com"])
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        row(&run.stdout, "alice@example.com"),
        vec![
            "alice@example.com",
            "in-meeting",
            "open",
            &version.to_string(),
            "Budget review"
        ]
    );
    assert_eq!(
        row(&run.stdout, "bob@example.com")[1..4],
        ["offline", "closed", "0"]
    );
    let one = ctl.json(admin, &["get", "alice@example.com"]).await;
    assert_eq!(one["status"], "in-meeting");
    assert_eq!(one["version"], version);
    assert!(one["pidf"]
        .as_str()
        .unwrap_or_default()
        .contains("Budget review"));
    let many = ctl
        .json(admin, &["get", "alice@example.com", "bob@example.com"])
        .await;
    assert_eq!(many.as_array().map(Vec::len), Some(2));

    // watch: the current state, `synced`, then a line per change.
    let mut watch = ctl
        .command(Some(&read), &["--json", "watch", "alice@example.com"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = next_json(&mut lines).await;
    assert_eq!(first["presentity"], "alice@example.com");
    assert_eq!(first["version"], version);
    assert_eq!(next_json(&mut lines).await["synced"], true);
    let run = ctl
        .run(
            admin,
            &["set", "alice@example.com", "busy", "--source", "calendar"],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    let change = next_json(&mut lines).await;
    assert_eq!(change["status"], "busy");
    assert!(change["version"].as_u64() > Some(version));
    let run = ctl
        .run(
            admin,
            &["clear", "alice@example.com", "--source", "calendar"],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("cleared calendar for alice@example.com"),
        "{}",
        run.stdout
    );
    assert_eq!(next_json(&mut lines).await["status"], "offline");
    drop(watch);

    // The table form of watch: a header, then aligned rows.
    let mut watch = ctl
        .command(Some(&read), &["watch", "alice@example.com"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let header = next_line(&mut lines).await;
    assert!(
        header.starts_with("TIME") && header.contains("PRESENTITY") && header.ends_with("NOTE"),
        "{header}"
    );
    let state = next_line(&mut lines).await;
    assert!(
        state.contains("alice@example.com") && state.contains("offline"),
        "{state}"
    );
    drop(watch);

    // bindings and unregister, after two phones register.
    let token = cluster.tokens.token("alice@example.com");
    let mut desk = Ua::udp("alice@example.com", cluster.edge(0)).await;
    let mut mobile = Ua::udp("alice@example.com", cluster.edge(0)).await;
    assert_eq!(desk.register(Some(&token), 600).await.status(), 200);
    assert_eq!(mobile.register(Some(&token), 600).await.status(), 200);
    let run = ctl
        .run(
            admin,
            &["bindings", "alice@example.com", "nobody@example.com"],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.starts_with("AOR"), "{}", run.stdout);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("alice@example.com"))
            .count(),
        2,
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("nobody@example.com: not registered"),
        "{}",
        run.stderr
    );
    let listed = ctl.json(admin, &["bindings", "alice@example.com"]).await;
    let bindings = listed[0]["bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(bindings.len(), 2);
    let desk_port = desk.local.port().to_string();
    let desk_contact = bindings
        .iter()
        .filter_map(|b| b["uri"].as_str())
        .find(|uri| uri.contains(&desk_port))
        .expect("the desk phone's contact")
        .to_string();
    let run = ctl
        .run(
            admin,
            &[
                "unregister",
                "alice@example.com",
                "--contact",
                &desk_contact,
            ],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("removed 1 binding(s) of alice@example.com"),
        "{}",
        run.stdout
    );
    let removed = ctl.json(admin, &["unregister", "alice@example.com"]).await;
    assert_eq!(removed["removed"].as_array().map(Vec::len), Some(1));
    let listed = ctl.json(admin, &["bindings", "alice@example.com"]).await;
    assert_eq!(listed[0]["bindings"].as_array().map(Vec::len), Some(0));

    // Errors: a clear message naming the gRPC code, and a failing exit status.
    let run = ctl.run(None, &["get", "alice@example.com"]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("GetPresence failed: Unauthenticated"),
        "{}",
        run.stderr
    );
    let run = ctl
        .run(Some(&read), &["set", "alice@example.com", "busy"])
        .await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("PermissionDenied") && run.stderr.contains("presence:write"),
        "{}",
        run.stderr
    );
    let run = ctl
        .run(
            admin,
            &["set", "alice@example.com", "busy", "--expires", "0"],
        )
        .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("InvalidArgument"), "{}", run.stderr);
    let nowhere = Ctl {
        presence_url: "http://127.0.0.1:1".into(),
        registrar_url: "http://127.0.0.1:1".into(),
    };
    let run = nowhere.run(admin, &["get", "alice@example.com"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("Unavailable"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presencectl_manages_watchers_and_rules() {
    let cluster = Cluster::start_authenticated(1);
    let ctl = Ctl {
        presence_url: cluster.presence_url(),
        registrar_url: cluster.registrar_url(),
    };
    let write = cluster
        .tokens
        .api_token(&["presence:read", "presence:write"]);
    let read = cluster.tokens.api_token(&["presence:read"]);
    let write = Some(write.as_str());

    // Alice wants to confirm everybody; Carol subscribes and waits.
    let run = ctl
        .run(
            write,
            &["rules", "alice@example.com", "--default", "confirm"],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(row(&run.stdout, "default"), vec!["default", "*", "confirm"]);
    let carol_token = cluster.tokens.token("carol@example.com");
    let mut carol = Ua::udp("carol@example.com", cluster.edge(0)).await;
    let (ok, _) = carol
        .subscribe("alice@example.com", &carol_token, 300)
        .await;
    assert_eq!(ok.status(), 200);
    let pending = carol
        .next_notify(cluster_tests::ua::WAIT)
        .await
        .expect("pending NOTIFY");
    assert_eq!(
        pending
            .headers()
            .subscription_state()
            .expect("Subscription-State")
            .expect("present")
            .state,
        sip::SubState::Pending
    );

    // watchers: a table, and JSON, with read access only.
    let run = ctl
        .run(Some(&read), &["watchers", "alice@example.com"])
        .await;
    assert!(run.ok, "{}", run.stderr);
    let cells = row(&run.stdout, "carol@example.com");
    assert_eq!(cells[1..3], ["pending", "subscribe"]);
    let listed = ctl
        .json(Some(&read), &["watchers", "alice@example.com"])
        .await;
    assert_eq!(listed[0]["watcher"], "carol@example.com");
    assert_eq!(listed[0]["status"], "pending");

    // Changing rules needs presence:write.
    let refused = ctl
        .run(
            Some(&read),
            &["approve", "alice@example.com", "carol@example.com"],
        )
        .await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("PermissionDenied"),
        "{}",
        refused.stderr
    );

    // approve: Carol's subscription turns active at once.
    let approved = ctl
        .json(
            write,
            &["approve", "alice@example.com", "carol@example.com"],
        )
        .await;
    assert_eq!(approved["subscriptions_changed"], 1);
    assert_eq!(approved["watchers"]["carol@example.com"], "allow");
    let active = carol
        .next_notify(cluster_tests::ua::WAIT)
        .await
        .expect("NOTIFY after approval");
    assert_eq!(
        active
            .headers()
            .subscription_state()
            .expect("Subscription-State")
            .expect("present")
            .state,
        sip::SubState::Active
    );

    // rules: domain rules, removal, and a bad action refused.
    let run = ctl
        .run(
            write,
            &[
                "rules",
                "alice@example.com",
                "--domain",
                "spam.example=block",
                "--remove",
                "carol@example.com",
            ],
        )
        .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        row(&run.stdout, "domain"),
        vec!["domain", "spam.example", "block"]
    );
    assert!(!run.stdout.contains("carol@example.com"), "{}", run.stdout);
    let bad = ctl
        .run(write, &["rules", "alice@example.com", "--default", "maybe"])
        .await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("InvalidArgument"), "{}", bad.stderr);

    // reject --polite: Carol keeps an active subscription showing "closed".
    let masked = ctl
        .json(
            write,
            &[
                "reject",
                "alice@example.com",
                "carol@example.com",
                "--polite",
            ],
        )
        .await;
    assert_eq!(masked["watchers"]["carol@example.com"], "polite-block");
    assert_eq!(masked["subscriptions_changed"], 1);
}
