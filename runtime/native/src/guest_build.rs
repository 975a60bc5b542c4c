//! Building a JavaScript filter: the SDK's engine module, pre-initialized with the
//! filter's code, wrapped as an `ambit:filter` component.
//!
//! 1. The engine (`sdk/engine/quickjs.wasm`: QuickJS and the world's bindings) is
//!    instrumented so its state can be read back.
//! 2. It runs once here, with every import a trap: `ambit-init` evaluates the bundle
//!    and keeps the handler it defines. A bundle whose top-level code calls the host
//!    fails the build, naming the call.
//! 3. Its memory and globals become the module's initial state (a snapshot), and
//!    `ambit-init` is removed: an instance starts with the filter evaluated.
//! 4. The world's type information is embedded and the module becomes a component.
//!
//! Every step is deterministic: the same engine, bundle and WIT give the same bytes.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::{Config, Engine, Instance, Linker, Module, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, Wizer};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

/// The initializer the engine exports; gone after the snapshot.
const INIT: &str = "ambit-init";

/// Most memory the filter's top-level code may use at build time.
const BUILD_MEMORY_BYTES: usize = 256 << 20;

/// Fuel for evaluating the bundle: a top-level infinite loop fails the build instead of hanging it.
const BUILD_FUEL: u64 = 20_000_000_000;

pub fn build(engine_wasm: &[u8], source: &str, file: &str, wit_dir: &str, world: &str) -> Result<Vec<u8>, String> {
    let mut wizer = Wizer::new();
    wizer.init_func(INIT);
    let (cx, instrumented) = wizer.instrument(engine_wasm).map_err(|e| format!("the engine module is not valid: {e:#}"))?;
    let mut run = Run::start(&instrumented)?;
    run.init(source, file)?;
    let snapshot = block_on(wizer.snapshot(&cx, &mut run)).map_err(|e| format!("snapshot failed: {e:#}"))?;
    componentize(snapshot, wit_dir, world)
}

struct Run {
    store: Store<Limit>,
    instance: Instance,
}

struct Limit;

impl wasmtime::ResourceLimiter for Limit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= BUILD_MEMORY_BYTES)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl Run {
    fn start(wasm: &[u8]) -> Result<Self, String> {
        let mut config = Config::new();
        config.consume_fuel(true);
        // Run once: compiling fast matters more than running fast.
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        let engine = Engine::new(&config).map_err(|e| e.to_string())?;
        let module = Module::new(&engine, wasm).map_err(|e| format!("the engine module does not compile: {e:#}"))?;
        let mut linker: Linker<Limit> = Linker::new(&engine);
        // Calling the host at build time traps; the trap names the import.
        for import in module.imports() {
            if let wasmtime::ExternType::Func(ty) = import.ty() {
                let (m, n) = (import.module().to_string(), import.name().to_string());
                linker
                    .func_new(import.module(), import.name(), ty, move |_, _, _| {
                        Err(wasmtime::format_err!("the filter's top-level code called the host ({m} {n}) while the filter was being built: move that call into a handler or setup()"))
                    })
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut store = Store::new(&engine, Limit);
        store.limiter(|l| l);
        store.set_fuel(BUILD_FUEL).map_err(|e| e.to_string())?;
        let instance = linker.instantiate(&mut store, &module).map_err(|e| format!("the engine module does not instantiate: {e:#}"))?;
        Ok(Run { store, instance })
    }

    fn alloc(&mut self, bytes: &[u8]) -> Result<i32, String> {
        let realloc = self
            .instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut self.store, "cabi_realloc")
            .map_err(|e| e.to_string())?;
        let ptr = realloc.call(&mut self.store, (0, 0, 1, bytes.len() as i32 + 1)).map_err(|e| e.to_string())?;
        let memory = self.memory()?;
        let mut with_nul = bytes.to_vec();
        with_nul.push(0);
        memory.write(&mut self.store, ptr as usize, &with_nul).map_err(|e| e.to_string())?;
        Ok(ptr)
    }

    fn memory(&mut self) -> Result<wasmtime::Memory, String> {
        self.instance.get_memory(&mut self.store, "memory").ok_or_else(|| "the engine module exports no memory".to_string())
    }

    fn init(&mut self, source: &str, file: &str) -> Result<(), String> {
        let src = self.alloc(source.as_bytes())?;
        let name = self.alloc(file.as_bytes())?;
        let init = self
            .instance
            .get_typed_func::<(i32, i32, i32), i32>(&mut self.store, INIT)
            .map_err(|e| format!("the engine module has no {INIT}: {e}"))?;
        let failed = match init.call(&mut self.store, (src, source.len() as i32, name)) {
            Ok(r) => r,
            Err(e) => {
                if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::OutOfFuel)) {
                    return Err("the filter's top-level code did not finish (an endless loop?)".into());
                }
                return Err(format!("evaluating the filter failed: {}", e.root_cause()));
            }
        };
        if failed != 0 {
            let memory = self.memory()?;
            let data = memory.data(&self.store);
            let at = failed as usize;
            let word = |o: usize| u32::from_le_bytes(data[at + o..at + o + 4].try_into().unwrap()) as usize;
            let (ptr, len) = (word(0), word(4));
            return Err(String::from_utf8_lossy(&data[ptr..ptr + len]).into_owned());
        }
        Ok(())
    }
}

impl InstanceState for Run {
    fn global_get(&mut self, name: &str, _type_hint: wasmparser::ValType) -> impl Future<Output = SnapshotVal> + Send {
        let global = self.instance.get_global(&mut self.store, name).expect("wizer exports every global");
        let value = match global.get(&mut self.store) {
            Val::I32(v) => SnapshotVal::I32(v),
            Val::I64(v) => SnapshotVal::I64(v),
            Val::F32(v) => SnapshotVal::F32(v),
            Val::F64(v) => SnapshotVal::F64(v),
            Val::V128(v) => SnapshotVal::V128(v.as_u128()),
            other => panic!("unsupported global {name}: {other:?}"),
        };
        std::future::ready(value)
    }

    fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) -> impl Future<Output = ()> + Send {
        let memory = self.instance.get_memory(&mut self.store, name).expect("wizer exports every memory");
        contents(memory.data(&self.store));
        std::future::ready(())
    }
}

fn componentize(mut module: Vec<u8>, wit_dir: &str, world: &str) -> Result<Vec<u8>, String> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir(wit_dir).map_err(|e| format!("reading the WIT in {wit_dir}: {e:#}"))?;
    let world = resolve.select_world(&[pkg], Some(world)).map_err(|e| format!("{e:#}"))?;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8).map_err(|e| format!("{e:#}"))?;
    ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("the module does not match the world: {e:#}"))
}

/// Drives a future whose every step is ready (the snapshot reads this thread's instance).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
