//! A spool file that cannot be read is kept aside, never overwritten.

use super::*;

#[test]
fn an_unreadable_spool_is_kept_aside_and_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&dir);
    std::fs::create_dir_all(settings.path.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &settings.path,
        b"this is not a redb file, but it is someone's data",
    )
    .expect("write");
    let error = match Spool::open(&settings) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a corrupt spool was opened"),
    };
    assert!(error.contains("cannot be read"), "{error}");
    assert!(error.contains("start_empty"), "{error}");
    assert!(
        !settings.path.exists(),
        "the corrupt file must be moved aside"
    );
    let kept = kept_aside(&settings);
    assert_eq!(
        std::fs::read(&kept[0]).expect("kept"),
        b"this is not a redb file, but it is someone's data"
    );

    std::fs::write(&settings.path, b"corrupt again").expect("write");
    let spool = Spool::open(&SpoolSettings {
        on_corrupt: OnCorrupt::StartEmpty,
        ..settings.clone()
    })
    .expect("start_empty opens an empty spool");
    assert_eq!(spool.monitor().status().events, 0);
    spool.close();
    assert_eq!(
        kept_aside(&settings).len(),
        2,
        "both corrupt files are kept"
    );
}

#[test]
fn an_event_that_cannot_be_decoded_makes_the_spool_unreadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&dir);
    {
        let (store, _) = Store::open(&settings.path, OnCorrupt::Refuse).expect("open");
        let good = SpooledEvent::from_records(&records(0), unix_millis(OffsetDateTime::now_utc()))
            .encode()
            .expect("encode");
        store
            .commit(&[(0, &good), (1, b"\x01garbage")], &[], &[])
            .expect("commit");
    }
    let error = match Spool::open(&settings) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("an undecodable event went unnoticed"),
    };
    assert!(error.contains("event 1"), "{error}");
    assert_eq!(kept_aside(&settings).len(), 1);
}

fn kept_aside(settings: &SpoolSettings) -> Vec<std::path::PathBuf> {
    let parent = settings.path.parent().expect("parent");
    let mut kept: Vec<_> = std::fs::read_dir(parent)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().contains(".corrupt-"))
        .collect();
    kept.sort();
    kept
}
