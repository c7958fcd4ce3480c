//! Bad input gets a dead letter or a quarantine with its provenance, never a crash or a
//! silent drop; bad configuration gets a message naming the key, whichever way the
//! configuration file was found.

use std::{fs, os::unix::fs::symlink, process::Command};

use crate::support::{output, query_i64, query_strings, sluice_bin, Deployment, SCHEMA};

#[test]
fn bad_rows_become_dead_letters_with_line_numbers_while_good_rows_land() {
    let d = Deployment::new(SCHEMA, "");
    let mut body =
        b"id,name,amount\n1,a,1.50\n2,b\n3,c,notanumber\n\"4\",\"multi\nline\",4.00\n5,caf"
            .to_vec();
    body.extend_from_slice(b"\xe9,5.00\nx6,f,6.00\n7,g,7.00\n");
    fs::write(d.inbox.join("mixed.csv"), body).expect("write");
    d.run_once();
    let db = d.db();
    let good = query_strings(
        &db,
        "SELECT id, _sluice_line, _sluice_file FROM raw.src ORDER BY id",
    );
    assert_eq!(
        good,
        [
            ["1", "2", "mixed.csv"],
            ["4", "5", "mixed.csv"],
            ["7", "9", "mixed.csv"]
        ]
    );
    let dead = query_strings(
        &db,
        "SELECT line, file, source, table_name, error, raw FROM _sluice.dead_letters ORDER BY line",
    );
    let lines: Vec<&str> = dead.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(lines, ["3", "4", "7", "8"]);
    assert!(dead
        .iter()
        .all(|r| r[1] == "mixed.csv" && r[2] == "src" && r[3] == "src"));
    assert!(
        dead[0][4].contains("expected 3 fields, found 2"),
        "{:?}",
        dead[0]
    );
    assert_eq!(dead[0][5], "2,b");
    assert!(
        dead[1][4].contains("amount") && dead[1][4].contains("notanumber"),
        "{:?}",
        dead[1]
    );
    assert!(dead[2][4].contains("UTF-8"), "{:?}", dead[2]);
    assert!(dead[3][4].contains("column id"), "{:?}", dead[3]);
    let file = query_strings(&db, "SELECT status, rows, dead_letters FROM _sluice.files");
    assert_eq!(file, [["ingested", "3", "4"]]);
}

#[test]
fn a_binary_file_is_quarantined_and_the_rest_goes_on() {
    let d = Deployment::new(SCHEMA, "");
    fs::write(
        d.inbox.join("image.csv"),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    )
    .expect("write");
    d.write("good.csv", "id,name,amount\n1,a,1.00\n");
    let out = d.run_once();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("quarantin") && log.contains("image.csv"),
        "{log}"
    );
    assert_eq!(d.moved("quarantine"), ["image.csv"]);
    assert_eq!(d.moved("archive"), ["good.csv"]);
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 1);
    let q = query_strings(
        &db,
        "SELECT status, reason FROM _sluice.files WHERE original_name = 'image.csv'",
    );
    assert_eq!(q[0][0], "quarantined");
    assert!(q[0][1].contains("NUL byte"), "{q:?}");
}

#[test]
fn a_header_column_the_table_lacks_is_added_and_one_named_twice_quarantines_its_file() {
    let d = Deployment::new(SCHEMA, "");
    d.write("first.csv", "id,name,amount\n0,z,0.50\n");
    d.run_once();
    d.write("extra.csv", "id,name,amount,surprise\n1,a,1.00,x\n");
    d.write("twice.csv", "id,name,amount,Name\n2,b,2.00,c\n");
    d.run_once();
    assert_eq!(d.moved("quarantine"), ["twice.csv"]);
    let reason = query_strings(
        &d.db(),
        "SELECT reason FROM _sluice.files WHERE status = 'quarantined'",
    );
    assert!(reason[0][0].contains("twice"), "{reason:?}");
    assert_eq!(
        query_strings(&d.db(), "SELECT id, surprise FROM raw.src ORDER BY id"),
        [["0", "NULL"], ["1", "x"]]
    );
    assert_eq!(
        query_strings(
            &d.db(),
            "SELECT column_name, change, new_type FROM _sluice.schema_changes"
        ),
        [["surprise", "add_column", "VARCHAR"]]
    );
}

#[test]
fn symlinks_leading_outside_the_watched_directory_are_refused() {
    let d = Deployment::new(SCHEMA, "");
    let outside = d.dir.path().join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(
        outside.join("secret.csv"),
        "id,name,amount\n99,secret,9.99\n",
    )
    .expect("write");
    symlink(outside.join("secret.csv"), d.inbox.join("evil.csv")).expect("symlink");
    fs::create_dir_all(d.inbox.join(".real")).expect("mkdir");
    fs::write(
        d.inbox.join(".real/inside.csv"),
        "id,name,amount\n1,ok,1.00\n",
    )
    .expect("write");
    symlink(d.inbox.join(".real/inside.csv"), d.inbox.join("link.csv")).expect("symlink");
    let out = d.run_once();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("outside the watched directory"), "{log}");
    let ids = query_strings(&d.db(), "SELECT id FROM raw.src");
    assert_eq!(ids, [["1"]]);
    assert!(outside.join("secret.csv").exists());
    assert!(
        fs::symlink_metadata(d.inbox.join("evil.csv")).is_ok(),
        "refused link was moved"
    );
}

#[test]
fn check_names_the_key_of_a_bad_config_and_run_refuses_it() {
    let d = Deployment::new("setle = \"1s\"", "");
    let out = output(&mut d.command(&["check"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources.src") && err.contains("setle") && err.contains("line "),
        "{err}"
    );
    let out = d.run_once_with(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !d.data.join("warehouse.duckdb").exists(),
        "a refused config touched the data dir"
    );
}

#[test]
fn check_reports_every_problem_including_missing_directories() {
    let d = Deployment::new(
        "delimiter = \";;\"\n[sources.src.schema]\nx = \"NOTATYPE\"",
        "[batch]\nmax_rows = 0\n",
    );
    let out = output(&mut d.command(&["check"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "batch.max_rows",
        "sources.src.delimiter",
        "sources.src.schema.x",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    let d = Deployment::new("", "");
    fs::remove_dir(&d.inbox).expect("rmdir");
    let out = output(&mut d.command(&["check"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sources.src.path"), "{err}");
    let d = Deployment::new("", "");
    let out = output(&mut d.command(&["check"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unset_environment_variable_is_named() {
    let d = Deployment::new("", "");
    let text = fs::read_to_string(&d.config).expect("read");
    fs::write(
        &d.config,
        text.replace("path = \"inbox\"", "path = \"${SLUICE_IT_UNSET}\""),
    )
    .expect("write");
    let out = output(&mut d.command(&["check"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SLUICE_IT_UNSET") && err.contains("sources.src.path"),
        "{err}"
    );
}

#[test]
fn the_config_comes_from_the_flag_then_sluice_config_then_the_working_directory() {
    let good = Deployment::new("", "");
    let bad = Deployment::new("setle = \"1s\"", "");
    let check = |dir: &Deployment, env: Option<&Deployment>, flag: Option<&Deployment>| {
        let mut cmd = Command::new(sluice_bin());
        cmd.arg("check")
            .current_dir(dir.dir.path())
            .env_remove("SLUICE_CONFIG");
        if let Some(d) = env {
            cmd.env("SLUICE_CONFIG", &d.config);
        }
        if let Some(d) = flag {
            cmd.arg("--config").arg(&d.config);
        }
        let out = output(&mut cmd);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), err.contains("setle"))
    };
    // ./sluice.toml by default.
    assert_eq!(check(&good, None, None), (Some(0), false));
    assert_eq!(check(&bad, None, None), (Some(2), true));
    // SLUICE_CONFIG over the working directory, --config over both.
    assert_eq!(check(&good, Some(&bad), None), (Some(2), true));
    assert_eq!(check(&bad, Some(&good), None), (Some(0), false));
    assert_eq!(check(&bad, Some(&bad), Some(&good)), (Some(0), false));
}

#[test]
fn version_prints_the_package_version() {
    let out = output(Command::new(sluice_bin()).arg("--version"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
}
