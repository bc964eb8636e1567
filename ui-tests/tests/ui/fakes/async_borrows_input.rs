use aqueduct::prelude::*;

#[task]
async fn fetch(page: &u32) -> Result<String, std::io::Error> {
    Ok(format!("page {page}"))
}

workflow! {
    fn flow(page: u32) -> String {
        fetch(&page)
    }
}

fn main() {
    // The fake's future holds `page`, a borrow of the input: copy it out first.
    let _ = flow::with_fakes([fetch::fake(|page| async move { Ok(format!("fake {page}")) })]);
}
