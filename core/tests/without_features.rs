//! Compile errors of a build without default features (`cargo test -p aqueduct
//! --no-default-features`, which CI runs): trybuild builds each case against Aqueduct
//! with the features of this test run.
#![cfg(not(feature = "durable"))]

#[test]
fn durable_without_its_feature_is_one_error_naming_the_feature() {
    trybuild::TestCases::new().compile_fail("tests/without_features/*.rs");
}
