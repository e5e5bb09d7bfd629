//! Routing keys with the map, and what a group answers for keys not its own.

mod common;

use common::{cluster, create, move_slot};
use keel_placement::{ClusterMap, RouteError, slot_for_key};

#[test]
fn keys_route_to_their_slot_owner_with_the_map_version() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    let slot = slot_for_key(b"alpha");
    move_slot(&mut map, slot, g);
    let route = map.route(b"alpha").expect("routable");
    assert_eq!(
        (route.slot, route.group, route.version),
        (slot, g, map.version())
    );
    assert_eq!(map.check_owner(g, b"alpha"), Ok(slot));
    assert_eq!(
        map.check_owner(1, b"alpha"),
        Err(RouteError::WrongGroup {
            slot,
            owner: g,
            version: map.version()
        })
    );
}

#[test]
fn an_empty_map_routes_nothing() {
    let map = ClusterMap::new();
    assert_eq!(map.route(b"k"), Err(RouteError::NoGroups { version: 0 }));
    assert!(map.serving_groups().is_empty());
}

#[test]
fn a_transaction_stays_in_one_group_or_is_refused() {
    let mut map = cluster(4);
    let g = create(&mut map, &[4], 1);
    move_slot(&mut map, slot_for_key(b"b"), g);
    let keys = |ks: &[&'static [u8]]| ks.to_vec();
    assert_eq!(map.route_together(keys(&[])), Ok(None));
    assert_eq!(map.route_together(keys(&[b"a", b"c"])), Ok(Some(1)));
    let err = map
        .route_together(keys(&[b"a", b"b", b"c"]))
        .expect_err("two groups");
    assert_eq!(
        err,
        RouteError::CrossGroup {
            groups: vec![1, g],
            version: map.version()
        }
    );
    assert!(err.to_string().contains("{hash tag}"), "{err}");
    // Keys sharing a tag always route together.
    move_slot(&mut map, slot_for_key(b"user:7"), g);
    assert_eq!(
        map.route_together(keys(&[b"{user:7}:name", b"{user:7}:mail"])),
        Ok(Some(g))
    );
}

#[test]
fn a_scan_asks_every_group_that_owns_a_slot() {
    let mut map = cluster(5);
    let a = create(&mut map, &[4], 1);
    create(&mut map, &[5], 1);
    assert_eq!(
        map.serving_groups().into_iter().collect::<Vec<_>>(),
        vec![1]
    );
    move_slot(&mut map, slot_for_key(b"x"), a);
    assert_eq!(
        map.serving_groups().into_iter().collect::<Vec<_>>(),
        vec![1, a]
    );
}
