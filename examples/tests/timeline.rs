//! `show RUN --timeline` draws a run's tasks as bars in the terminal; `show RUN --html
//! FILE` writes one self-contained page with the timeline and the graph, which a real
//! headless Chromium loads (from the distribution's packages; `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod crash_flow;
use crash_flow::Scratch;

/// The browser to test the page in: `CHROMIUM`, or Debian's `/usr/bin/chromium`.
/// Without one the test says so and passes, unless `AQUEDUCT_REQUIRE_BROWSER` is set
/// (as `.ci/run` sets it).
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")))
        .filter(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("AQUEDUCT_REQUIRE_BROWSER").is_none(),
            "no Chromium: install Debian's `chromium` or set CHROMIUM"
        );
        eprintln!("no Chromium found: the HTML page is not loaded in a browser");
    }
    found
}

/// The page's DOM after Chromium loaded it and ran its script.
fn loaded(browser: &Path, page: &Path, profile: &Path) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_run_is_drawn_as_a_timeline_and_as_a_page_a_browser_renders() {
    let scratch = Scratch::new("timeline", "drawn");
    scratch.stdout(&["run", "--run-id", "t1"]);

    let text = scratch.stdout(&["show", "t1", "--timeline"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("crash_flow"), "{text}");
    for node in ["xs", "squares", "sum", "summary"] {
        let line = lines
            .iter()
            .find(|line| line.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no row for {node}: {text}"));
        assert!(line.contains('█') && line.ends_with("succeeded"), "{line}");
    }
    // `sum` and `squares` ran side by side, after `xs`: their bars start later.
    let start = |node: &str| {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap();
        line.chars().position(|c| c == '█').unwrap()
    };
    assert!(
        start("xs") < start("squares") && start("xs") < start("sum"),
        "{text}"
    );
    assert!(start("summary") > start("sum"), "{text}");

    let page = scratch.0.join("run.html");
    scratch.stdout(&["show", "t1", "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script src") && !html.contains("<link"),
        "self-contained"
    );
    let Some(browser) = chromium() else {
        return;
    };
    let dom = loaded(&browser, &page, &scratch.0.join("profile"));
    // The page's script counted what the browser parsed: a bar per task that ran, a
    // node per node of the graph (the parameter, six tasks, of which the arm not
    // taken, the decision and the branch's value).
    let bars = html.matches(r#"<rect class="bar "#).count();
    assert!(bars >= 6, "{html}");
    assert!(dom.contains(&format!(r#"data-bars="{bars}""#)), "{dom}");
    assert!(dom.contains(r#"data-nodes="9""#), "{dom}");
    for node in ["xs", "squares", "sum", "summary", "halves.if"] {
        assert!(
            dom.contains(&format!(r#"data-node="{node}""#)),
            "{node}: {dom}"
        );
    }
}
