//! Every compile error Aqueduct promises, and the happy paths, as trybuild snapshots.
//! Refresh with `TRYBUILD=overwrite cargo test -p aqueduct-ui-tests` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
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
    cases.pass("tests/ui/pass/*.rs");
}
