//! Big-segment members on both backends: batches are upserts that count only real changes,
//! a key moves between lists, removal takes only the named list's keys, and membership, counts
//! and pages read back what was written.

use flagstaff_store::{MemberCounts, MemberList};

use crate::backends::{TestStore, on_every_backend};

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn members_are_added_moved_removed_and_read_back() {
    on_every_backend(|t: TestStore| async move {
        let s = &t.store;
        let vip = ("p", "e", "vip");
        // A key twice in one batch is one row.
        let added = s
            .big_segment_apply(
                vip,
                MemberList::Included,
                false,
                &keys(&["a", "b", "c", "a"]),
            )
            .await
            .unwrap();
        assert_eq!(added, 3);
        let again = s
            .big_segment_apply(vip, MemberList::Included, false, &keys(&["a", "b"]))
            .await
            .unwrap();
        assert_eq!(again, 0, "adding what is there changes nothing");
        let moved = s
            .big_segment_apply(vip, MemberList::Excluded, false, &keys(&["b"]))
            .await
            .unwrap();
        assert_eq!(moved, 1);
        // Removing from the included list leaves an excluded key alone.
        let removed = s
            .big_segment_apply(vip, MemberList::Included, true, &keys(&["b", "c", "zz"]))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        s.big_segment_apply(
            ("p", "e", "other"),
            MemberList::Included,
            false,
            &keys(&["a"]),
        )
        .await
        .unwrap();
        assert_eq!(
            s.big_segment_counts("p", "e", "vip").await.unwrap(),
            MemberCounts {
                included: 1,
                excluded: 1
            }
        );
        let mut a = s.big_segment_membership("p", "e", "a").await.unwrap();
        a.sort();
        assert_eq!(a, [("other".to_owned(), true), ("vip".to_owned(), true)]);
        assert_eq!(
            s.big_segment_membership("p", "e", "b").await.unwrap(),
            [("vip".to_owned(), false)]
        );
        assert!(
            s.big_segment_membership("p", "other-env", "a")
                .await
                .unwrap()
                .is_empty()
        );
        let page = s.big_segment_page(vip, "", 1).await.unwrap();
        assert_eq!(page, [("a".to_owned(), true)]);
        let rest = s.big_segment_page(vip, "a", 10).await.unwrap();
        assert_eq!(rest, [("b".to_owned(), false)]);
        // A batch far larger than one statement, and a clear in more than one transaction.
        let many: Vec<String> = (0..12_345).map(|i| format!("k{i}")).collect();
        assert_eq!(
            s.big_segment_apply(vip, MemberList::Included, false, &many)
                .await
                .unwrap(),
            12_345
        );
        assert_eq!(s.big_segment_clear("p", "e", "vip").await.unwrap(), 12_347);
        assert_eq!(
            s.big_segment_counts("p", "e", "vip").await.unwrap(),
            MemberCounts::default()
        );
        assert_eq!(
            s.big_segment_counts("p", "e", "other")
                .await
                .unwrap()
                .included,
            1,
            "other segments keep their members"
        );
        t
    })
    .await;
}
