//! Runs a wasm32-wasip2 test binary under wasmtime: the target's cargo
//! `runner` (see .cargo/config.toml), so `cargo test --target wasm32-wasip2`
//! executes the policy's unit tests as WebAssembly.
//!
//! WASI is provided with the terminal's stdio and the test's arguments;
//! any other import (the policy's host interface, which unit tests reach
//! only through a fake) is defined to trap if called.
//!
//! wasm32 aborts on a panic, and libtest keeps a test's output (the panic
//! message with it) in a buffer it prints only when the test returns: a
//! failing test showed nothing but a trap. So tests run with
//! `RUST_TEST_NOCAPTURE=1`, and the message reaches the terminal as the
//! panic happens.
//!
//! Built with the host: `cargo build --release -p nodecache --bins`
//! (target/release/nodecache-wasm-test-runner); a policy outside this
//! workspace names it as its runner with
//! `CARGO_TARGET_WASM32_WASIP2_RUNNER=/path/to/nodecache-wasm-test-runner`.

use anyhow::{Context, Result, bail};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("nodecache-wasm-test-runner: {error:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<i32> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        bail!("usage: nodecache-wasm-test-runner FILE.wasm [ARGS...]")
    };
    let engine = Engine::new(&Config::new()).map_err(anyhow::Error::from)?;
    let component = Component::from_file(&engine, &path)
        .map_err(anyhow::Error::from)
        .with_context(|| path.clone())?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
    define_other_imports_as_traps(&mut linker, &component, &engine)?;

    let test_args: Vec<String> = std::iter::once(path.clone()).chain(args).collect();
    let wasi = WasiCtxBuilder::new()
        .inherit_stdio()
        .args(&test_args)
        .env("RUST_TEST_NOCAPTURE", "1")
        .build();
    let mut store = Store::new(
        &engine,
        State {
            wasi,
            table: ResourceTable::new(),
        },
    );
    let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
        .map_err(anyhow::Error::from)
        .context("instantiate the test binary")?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(exit.0),
            // A panic aborts: its message is above. Say so in one line
            // instead of wasmtime's backtrace of the abort.
            None => {
                eprintln!(
                    "nodecache-wasm-test-runner: the test binary stopped on a trap ({}); \
                     a failing assertion's message is printed above it",
                    error.root_cause()
                );
                Ok(101)
            }
        },
    }
}

/// Every function of every non-WASI imported instance traps when called.
fn define_other_imports_as_traps(
    linker: &mut Linker<State>,
    component: &Component,
    engine: &Engine,
) -> Result<()> {
    for (name, item) in component.component_type().imports(engine) {
        if name.starts_with("wasi:") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut root = linker.root();
        let mut scope = root.instance(name).map_err(anyhow::Error::from)?;
        for (function, _) in instance.exports(engine) {
            let label = format!("{name}#{function}");
            scope
                .func_new(function, move |_store, _ty, _params, _results| {
                    Err(wasmtime::Error::msg(format!(
                        "{label} is not available to unit tests"
                    )))
                })
                .map_err(anyhow::Error::from)?;
        }
    }
    Ok(())
}
