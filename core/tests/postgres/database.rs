//! A fresh database per test on the server `DATABASE_URL` names.

use aqueduct::store::PostgresStore;

/// The server's URL, if the tests are to run.
pub(crate) fn server() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// A fresh database on the server, dropped at the end of the test.
pub(crate) struct Database {
    admin: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl Database {
    pub(crate) fn new(test: &str) -> Option<Self> {
        let admin = server()?;
        let name = format!("aqueduct_test_{test}_{}", std::process::id());
        off_runtime(|| {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .unwrap();
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
        });
        let url = with_database(&admin, &name);
        Some(Self { admin, name, url })
    }

    #[allow(dead_code)]
    pub(crate) fn open(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).unwrap()
    }

    /// A plain connection to this database, to look at or change its tables.
    #[allow(dead_code)]
    pub(crate) fn sql(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        off_runtime(|| {
            if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                let _ = client.batch_execute(&drop);
            }
        });
    }
}

/// Runs `f` on a thread of its own: the `postgres` driver cannot block inside an async
/// test's runtime.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap())
}

/// `url` naming database `name` instead of its own, its options kept.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let root = &base[..base.rfind('/').expect("a URL with a database")];
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}
