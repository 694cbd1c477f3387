//! A stub of the proxy-wasm host (ABI 0.2.1) with Envoy's semantics for every call the
//! filter makes: header maps, buffers, shared data with compare-and-swap, metrics,
//! properties, local replies, outbound calls, the clock and the log; the WASI imports
//! answer as an empty environment. Every call is tallied by kind, with the bytes it
//! copies across the boundary in either direction. An import the stub does not model
//! traps, so a scenario that reaches one fails loudly instead of measuring a fiction.

use std::collections::BTreeMap;
use wasmi::{Caller, Error, Linker, Memory, Module, TypedFunc, Val};

const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const CAS_MISMATCH: i32 = 8;

/// Header map and buffer types of the ABI.
const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
const REQUEST_BODY: i32 = 0;
const PLUGIN_CONFIGURATION: i32 = 7;

pub type Headers = Vec<(String, Vec<u8>)>;

/// What crossed the boundary during a measurement.
#[derive(Default, Clone)]
pub struct Tally {
    /// Host calls by import name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Bytes the host wrote into the module's memory (headers, body, shared data).
    pub bytes_in: u64,
    /// Bytes the host read out of the module's memory (keys, values, bodies, logs).
    pub bytes_out: u64,
    /// Calls of the module's `proxy_on_memory_allocate` by the host, one per value handed in.
    pub host_allocations: u64,
}

/// A local reply the filter sent.
pub struct LocalReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One HTTP stream as the host sees it.
#[derive(Default)]
pub struct Stream {
    pub request_headers: Headers,
    pub request_body: Vec<u8>,
    pub response_headers: Headers,
    /// Envoy's `response.code_details`.
    pub code_details: String,
    pub local_reply: Option<LocalReply>,
    pub resumed: bool,
}

pub struct Host {
    pub memory: Option<Memory>,
    pub allocate: Option<TypedFunc<i32, i32>>,
    pub tally: Tally,
    pub now_nanos: u64,
    pub configuration: Vec<u8>,
    /// Shared data: key -> (value, cas).
    shared: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    last_cas: u32,
    metrics: Vec<(String, i64)>,
    pub stream: Stream,
    /// Log lines (and anything written to stdout or stderr), for a failing scenario's report.
    pub logs: Vec<String>,
    calls_out: u32,
}

impl Host {
    pub fn new(configuration: Vec<u8>, now_nanos: u64) -> Self {
        Host {
            memory: None,
            allocate: None,
            tally: Tally::default(),
            now_nanos,
            configuration,
            shared: BTreeMap::new(),
            last_cas: 0,
            metrics: Vec::new(),
            stream: Stream::default(),
            logs: Vec::new(),
            calls_out: 0,
        }
    }
}

fn trap(message: String) -> Error {
    Error::new(message)
}

fn memory(caller: &Caller<'_, Host>) -> Result<Memory, Error> {
    caller.data().memory.ok_or_else(|| trap("the module exports no memory".into()))
}

fn range(ptr: i32, len: i32, size: usize) -> Result<std::ops::Range<usize>, Error> {
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let end = start.checked_add(len).filter(|end| *end <= size);
    end.map(|end| start..end).ok_or_else(|| trap(format!("out of bounds: {len} bytes at {start}")))
}

/// Copies `len` bytes at `ptr` out of the module.
fn read(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> Result<Vec<u8>, Error> {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let bytes = data[range(ptr, len, data.len())?].to_vec();
    caller.data_mut().tally.bytes_out += bytes.len() as u64;
    Ok(bytes)
}

fn write(caller: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) -> Result<(), Error> {
    let mem = memory(caller)?;
    let data = mem.data_mut(&mut *caller);
    let r = range(ptr, bytes.len() as i32, data.len())?;
    data[r].copy_from_slice(bytes);
    Ok(())
}

fn write_u32(caller: &mut Caller<'_, Host>, ptr: i32, value: u32) -> Result<(), Error> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the module as Envoy does: memory from the module's
/// `proxy_on_memory_allocate`, its address and size written at `ret_ptr` and `ret_size`.
fn give(caller: &mut Caller<'_, Host>, bytes: &[u8], ret_ptr: i32, ret_size: i32) -> Result<(), Error> {
    let ptr = if bytes.is_empty() {
        0
    } else {
        let allocate = caller.data().allocate.ok_or_else(|| trap("no proxy_on_memory_allocate".into()))?;
        let ptr = allocate.call(&mut *caller, bytes.len() as i32)?;
        write(caller, ptr, bytes)?;
        let tally = &mut caller.data_mut().tally;
        tally.host_allocations += 1;
        tally.bytes_in += bytes.len() as u64;
        ptr
    };
    write_u32(caller, ret_ptr, ptr as u32)?;
    write_u32(caller, ret_size, bytes.len() as u32)
}

fn tally(caller: &mut Caller<'_, Host>, name: &'static str) {
    *caller.data_mut().tally.calls.entry(name).or_default() += 1;
}

/// The ABI's serialised header map: count, then (name, value) lengths, then each name
/// and value followed by a NUL.
pub fn serialize_map(map: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = (map.len() as u32).to_le_bytes().to_vec();
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn deserialize_map(bytes: &[u8]) -> Result<Headers, Error> {
    let bad = || trap("a malformed header map".into());
    let word = |at: usize| -> Result<usize, Error> {
        let b = bytes.get(at..at + 4).ok_or_else(bad)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = word(0)?;
    let mut at = 4 + count * 8;
    let mut map = Vec::with_capacity(count);
    for n in 0..count {
        let (klen, vlen) = (word(4 + n * 8)?, word(8 + n * 8)?);
        let key = bytes.get(at..at + klen).ok_or_else(bad)?;
        at += klen + 1;
        let value = bytes.get(at..at + vlen).ok_or_else(bad)?;
        at += vlen + 1;
        map.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Ok(map)
}

fn map_mut(host: &mut Host, map: i32) -> Option<&mut Headers> {
    match map {
        REQUEST_HEADERS => Some(&mut host.stream.request_headers),
        RESPONSE_HEADERS => Some(&mut host.stream.response_headers),
        _ => None,
    }
}

fn key_of(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).to_ascii_lowercase())
}

/// Sets (`replace`: the first of that name, else a new one) or adds a header.
fn put_header(c: &mut Caller<'_, Host>, map: i32, key: (i32, i32), value: (i32, i32), replace: bool) -> Result<i32, Error> {
    let key = key_of(c, key.0, key.1)?;
    let value = read(c, value.0, value.1)?;
    if let Some(m) = map_mut(c.data_mut(), map) {
        match m.iter_mut().find(|(k, _)| replace && *k == key) {
            Some(entry) => entry.1 = value,
            None => m.push((key, value)),
        }
    }
    Ok(OK)
}

/// Defines every import of `module`: the modelled ones, and a trap for the rest.
pub fn link(linker: &mut Linker<Host>, module: &Module) -> Result<(), Error> {
    linker.func_wrap("env", "proxy_log", |mut c: Caller<'_, Host>, _level: i32, ptr: i32, len: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_log");
        let line = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
        c.data_mut().logs.push(line);
        Ok(OK)
    })?;
    linker.func_wrap("env", "proxy_get_current_time_nanoseconds", |mut c: Caller<'_, Host>, ret: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_get_current_time_nanoseconds");
        let now = c.data().now_nanos;
        write(&mut c, ret, &now.to_le_bytes())?;
        Ok(OK)
    })?;
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", |mut c: Caller<'_, Host>, _ms: i32| -> i32 {
        tally(&mut c, "proxy_set_tick_period_milliseconds");
        OK
    })?;
    linker.func_wrap("env", "proxy_set_effective_context", |mut c: Caller<'_, Host>, _ctx: i32| -> i32 {
        tally(&mut c, "proxy_set_effective_context");
        OK
    })?;
    linker.func_wrap("env", "proxy_done", |mut c: Caller<'_, Host>| -> i32 {
        tally(&mut c, "proxy_done");
        OK
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, Host>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> Result<i32, Error> {
            tally(&mut c, "proxy_get_buffer_bytes");
            let buffer = match kind {
                REQUEST_BODY => c.data().stream.request_body.clone(),
                PLUGIN_CONFIGURATION => c.data().configuration.clone(),
                _ => return Ok(NOT_FOUND),
            };
            let start = (start as u32 as usize).min(buffer.len());
            let end = start.saturating_add(max as u32 as usize).min(buffer.len());
            give(&mut c, &buffer[start..end], ret_ptr, ret_size)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, Host>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32, Error> {
            tally(&mut c, "proxy_set_buffer_bytes");
            if kind != REQUEST_BODY {
                return Ok(BAD_ARGUMENT);
            }
            let data = read(&mut c, ptr, len)?;
            let body = &mut c.data_mut().stream.request_body;
            let start = (start as u32 as usize).min(body.len());
            let end = start.saturating_add(size as u32 as usize).min(body.len());
            body.splice(start..end, data);
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_get_header_map_pairs", |mut c: Caller<'_, Host>, map: i32, ret_ptr: i32, ret_size: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_get_header_map_pairs");
        let bytes = map_mut(c.data_mut(), map).map(|m| serialize_map(m)).unwrap_or_default();
        give(&mut c, &bytes, ret_ptr, ret_size)?;
        Ok(OK)
    })?;
    linker.func_wrap("env", "proxy_set_header_map_pairs", |mut c: Caller<'_, Host>, map: i32, ptr: i32, len: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_set_header_map_pairs");
        let pairs = deserialize_map(&read(&mut c, ptr, len)?)?;
        match map_mut(c.data_mut(), map) {
            Some(m) => *m = pairs,
            None => return Ok(BAD_ARGUMENT),
        }
        Ok(OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, Host>, map: i32, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32| -> Result<i32, Error> {
            tally(&mut c, "proxy_get_header_map_value");
            let key = key_of(&mut c, kptr, klen)?;
            let value = map_mut(c.data_mut(), map).and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
            match value {
                Some(value) => give(&mut c, &value, ret_ptr, ret_size).map(|()| OK),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap("env", "proxy_remove_header_map_value", |mut c: Caller<'_, Host>, map: i32, kptr: i32, klen: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_remove_header_map_value");
        let key = key_of(&mut c, kptr, klen)?;
        if let Some(m) = map_mut(c.data_mut(), map) {
            m.retain(|(k, _)| *k != key);
        }
        Ok(OK)
    })?;
    for (name, replace) in [("proxy_replace_header_map_value", true), ("proxy_add_header_map_value", false)] {
        linker.func_wrap("env", name, move |mut c: Caller<'_, Host>, map: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| -> Result<i32, Error> {
            tally(&mut c, name);
            put_header(&mut c, map, (kptr, klen), (vptr, vlen), replace)
        })?;
    }
    linker.func_wrap("env", "proxy_get_property", |mut c: Caller<'_, Host>, ptr: i32, len: i32, ret_ptr: i32, ret_size: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_get_property");
        let path = read(&mut c, ptr, len)?;
        if path != b"response\0code_details" {
            return Ok(NOT_FOUND);
        }
        let details = c.data().stream.code_details.clone().into_bytes();
        give(&mut c, &details, ret_ptr, ret_size)?;
        Ok(OK)
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, Host>, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32| -> Result<i32, Error> {
            tally(&mut c, "proxy_get_shared_data");
            let key = read(&mut c, kptr, klen)?;
            let Some((value, cas)) = c.data().shared.get(&key).cloned() else { return Ok(NOT_FOUND) };
            give(&mut c, &value, ret_ptr, ret_size)?;
            write_u32(&mut c, ret_cas, cas)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, Host>, kptr: i32, klen: i32, vptr: i32, vlen: i32, cas: i32| -> Result<i32, Error> {
            tally(&mut c, "proxy_set_shared_data");
            let key = read(&mut c, kptr, klen)?;
            let value = read(&mut c, vptr, vlen)?;
            let host = c.data_mut();
            // Envoy's SharedData::set: a non-zero cas must match the entry's.
            if let Some((_, current)) = host.shared.get(&key) {
                if cas != 0 && cas as u32 != *current {
                    return Ok(CAS_MISMATCH);
                }
            }
            host.last_cas += 1;
            let next = host.last_cas;
            host.shared.insert(key, (value, next));
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_continue_stream", |mut c: Caller<'_, Host>, stream: i32| -> i32 {
        tally(&mut c, "proxy_continue_stream");
        if stream == 0 {
            c.data_mut().stream.resumed = true;
        }
        OK
    })?;
    linker.func_wrap("env", "proxy_close_stream", |mut c: Caller<'_, Host>, _stream: i32| -> i32 {
        tally(&mut c, "proxy_close_stream");
        OK
    })?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, Host>, status: i32, dptr: i32, dlen: i32, bptr: i32, blen: i32, hptr: i32, hlen: i32, _grpc: i32| -> Result<i32, Error> {
            tally(&mut c, "proxy_send_local_response");
            read(&mut c, dptr, dlen)?;
            let body = read(&mut c, bptr, blen)?;
            deserialize_map(&read(&mut c, hptr, hlen)?)?;
            c.data_mut().stream.local_reply = Some(LocalReply { status: status as u16, body });
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, Host>,
         uptr: i32,
         ulen: i32,
         hptr: i32,
         hlen: i32,
         bptr: i32,
         blen: i32,
         tptr: i32,
         tlen: i32,
         _timeout: i32,
         ret: i32|
         -> Result<i32, Error> {
            tally(&mut c, "proxy_http_call");
            for (p, l) in [(uptr, ulen), (hptr, hlen), (bptr, blen), (tptr, tlen)] {
                read(&mut c, p, l)?;
            }
            c.data_mut().calls_out += 1;
            let token = c.data().calls_out;
            write_u32(&mut c, ret, token)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap("env", "proxy_define_metric", |mut c: Caller<'_, Host>, _kind: i32, ptr: i32, len: i32, ret: i32| -> Result<i32, Error> {
        tally(&mut c, "proxy_define_metric");
        let name = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
        let metrics = &mut c.data_mut().metrics;
        metrics.push((name, 0));
        let id = metrics.len() as u32;
        write_u32(&mut c, ret, id)?;
        Ok(OK)
    })?;
    linker.func_wrap("env", "proxy_increment_metric", |mut c: Caller<'_, Host>, id: i32, offset: i64| -> i32 {
        tally(&mut c, "proxy_increment_metric");
        add_to_metric(&mut c, id, offset)
    })?;
    // A histogram sample: counted in the metric's value like an increment of one, so a
    // scenario sees it was recorded.
    linker.func_wrap("env", "proxy_record_metric", |mut c: Caller<'_, Host>, id: i32, _value: i64| -> i32 {
        tally(&mut c, "proxy_record_metric");
        add_to_metric(&mut c, id, 1)
    })?;
    // WASI: an empty environment; stdout and stderr (a panic message) go to the log.
    linker.func_wrap("wasi_snapshot_preview1", "fd_write", |mut c: Caller<'_, Host>, _fd: i32, iovs: i32, count: i32, ret: i32| -> Result<i32, Error> {
        tally(&mut c, "fd_write");
        let mut written = 0u32;
        for n in 0..count {
            let iov = read(&mut c, iovs + n * 8, 8)?;
            let (ptr, len) = (u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]), u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]));
            let text = read(&mut c, ptr as i32, len as i32)?;
            c.data_mut().logs.push(String::from_utf8_lossy(&text).into_owned());
            written += len;
        }
        write_u32(&mut c, ret, written)?;
        Ok(0)
    })?;
    linker.func_wrap("wasi_snapshot_preview1", "environ_sizes_get", |mut c: Caller<'_, Host>, count: i32, size: i32| -> Result<i32, Error> {
        tally(&mut c, "environ_sizes_get");
        write_u32(&mut c, count, 0)?;
        write_u32(&mut c, size, 0)?;
        Ok(0)
    })?;
    linker.func_wrap("wasi_snapshot_preview1", "environ_get", |mut c: Caller<'_, Host>, _environ: i32, _buf: i32| -> i32 {
        tally(&mut c, "environ_get");
        0
    })?;
    linker.func_wrap("wasi_snapshot_preview1", "proc_exit", |_c: Caller<'_, Host>, code: i32| -> Result<(), Error> { Err(Error::i32_exit(code)) })?;
    for import in module.imports() {
        let Some(ty) = import.ty().func().cloned() else { continue };
        let message = format!("the filter called {}.{}, which the stub does not model", import.module(), import.name());
        // A call modelled above is defined already: func_new refuses it, and the model stays.
        let _ = linker.func_new(import.module(), import.name(), ty, move |_: Caller<'_, Host>, _: &[Val], _: &mut [Val]| Err(trap(message.clone())));
    }
    Ok(())
}

/// Adds `by` to metric `id` (1-based, as defined); NOT_FOUND for an id never defined.
fn add_to_metric(c: &mut Caller<'_, Host>, id: i32, by: i64) -> i32 {
    match (id as usize).checked_sub(1).and_then(|i| c.data_mut().metrics.get_mut(i)) {
        Some((_, value)) => {
            *value += by;
            OK
        }
        None => NOT_FOUND,
    }
}
