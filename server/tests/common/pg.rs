//! A PostgreSQL database of a test's own, on the server `KLAD_TEST_POSTGRES`
//! names (start one with `eval "$(bash scripts/postgres.sh)"`); without it
//! the tests fail under CI and are skipped with a loud note elsewhere.

use std::time::SystemTime;

pub fn postgres_url() -> Option<String> {
    match std::env::var("KLAD_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "KLAD_TEST_POSTGRES is not set, so klad-server on PostgreSQL cannot be tested. Start PostgreSQL and set it with `eval \"$(bash scripts/postgres.sh)\"` (scripts/test.sh does this), then run the tests again."
        ),
        _ => {
            eprintln!(
                "\n*** NOTE: KLAD_TEST_POSTGRES is not set: klad-server on PostgreSQL was NOT TESTED. Run `eval \"$(bash scripts/postgres.sh)\"` first. ***\n"
            );
            None
        }
    }
}

/// A database of its own on the test server, dropped when done.
pub struct TempDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

pub async fn sql(url: &str, statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
    let task = tokio::spawn(conn);
    let rows = client
        .query(statement, &[])
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    drop(client);
    let _ = task.await;
    rows
}

impl TempDatabase {
    pub async fn create(admin_url: &str) -> TempDatabase {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("klad_e2e_{}_{}", std::process::id(), nanos % 1_000_000_000);
        sql(admin_url, &format!("CREATE DATABASE {name}")).await;
        let config: tokio_postgres::Config = admin_url.parse().unwrap();
        let db = config.get_dbname().unwrap();
        let base = admin_url.rfind(db).unwrap();
        let url = format!(
            "{}{name}{}",
            &admin_url[..base],
            &admin_url[base + db.len()..]
        );
        TempDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }
}

/// Dropped also when the test fails halfway, so no database is left behind
/// (on a thread of its own: this runs inside the test's runtime).
impl Drop for TempDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(sql(&admin_url, &statement)))
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
