//! Every compile error Aqueduct promises, and the happy paths, as trybuild snapshots.
//! Refresh with `TRYBUILD=overwrite cargo test -p aqueduct-ui-tests` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    // `AQUEDUCT_UI="tests/ui/moves/*.rs tests/ui/types/x.rs"` checks those cases only,
    // while working on them.
    if let Ok(only) = std::env::var("AQUEDUCT_UI") {
        for glob in only.split_whitespace() {
            if glob.contains("/pass/") {
                cases.pass(glob);
            } else {
                cases.compile_fail(glob);
            }
        }
        return;
    }
    cases.compile_fail("tests/ui/wiring/*.rs");
    cases.compile_fail("tests/ui/types/*.rs");
    cases.compile_fail("tests/ui/syntax/*.rs");
    cases.compile_fail("tests/ui/task/*.rs");
    cases.compile_fail("tests/ui/options/*.rs");
    cases.compile_fail("tests/ui/fanout/*.rs");
    cases.compile_fail("tests/ui/subflow/*.rs");
    cases.compile_fail("tests/ui/durable/*.rs");
    cases.compile_fail("tests/ui/crate/*.rs");
    cases.compile_fail("tests/ui/moves/*.rs");
    cases.compile_fail("tests/ui/branches/*.rs");
    cases.compile_fail("tests/ui/cache/*.rs");
    cases.compile_fail("tests/ui/resources/*.rs");
    cases.compile_fail("tests/ui/fakes/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
