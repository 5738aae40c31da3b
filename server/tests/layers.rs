//! This crate's modules import one way: no module uses one that uses it back, directly,
//! around a circle, or through a re-export; nor does any top-level module (a layer). Read
//! from the source, so a new import that closes a circle fails here.

#[test]
fn no_module_or_layer_imports_one_that_imports_it_back() {
    spud_layers::assert_layered(env!("CARGO_MANIFEST_DIR"));
}
