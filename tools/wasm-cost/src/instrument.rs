//! Counting calls: a copy of the module in which chosen functions add one to an exported
//! global of their own on entry. Counting `dlmalloc` (every fresh heap block goes through
//! it: `__rust_alloc`, a moving `__rust_realloc`, an aligned allocation) gives the
//! allocations; counting every function gives `--profile`'s calls by function. The copies
//! serve only these counts: instructions are counted on the module as built.

use std::collections::BTreeMap;
use std::convert::Infallible;
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{ConstExpr, GlobalType, Instruction, ValType};
use wasmparser::{Name, Parser, Payload};

/// The allocator function, by its name in the name section (the build keeps names with
/// `wasm-opt -g`).
pub const ALLOCATOR: &str = "dlmalloc";

/// A counted function: its name and the exported global holding its calls.
pub struct Counted {
    pub name: String,
    pub global: String,
}

struct Counting {
    /// Code section index (imports not counted) -> index of its counter global.
    targets: BTreeMap<u32, u32>,
    /// Globals before the counters: every imported and defined one.
    first: u32,
    /// Code section bodies seen so far.
    seen: u32,
    /// Count the instructions of each straight-line run as it starts, instead of calls.
    instructions: bool,
}

fn global_name(n: usize) -> String {
    format!("wasm_cost_calls_{n}")
}

impl Reencode for Counting {
    type Error = Infallible;

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        for _ in 0..self.targets.len() {
            globals.global(GlobalType { val_type: ValType::I64, mutable: true, shared: false }, &ConstExpr::i64_const(0));
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        for n in 0..self.targets.len() {
            exports.export(&global_name(n), wasm_encoder::ExportKind::Global, self.first + n as u32);
        }
        Ok(())
    }

    fn parse_function_body(&mut self, code: &mut wasm_encoder::CodeSection, func: wasmparser::FunctionBody<'_>) -> Result<(), reencode::Error<Infallible>> {
        let index = self.seen;
        self.seen += 1;
        let Some(&global) = self.targets.get(&index) else {
            return reencode::utils::parse_function_body(self, code, func);
        };
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let count = |f: &mut wasm_encoder::Function, n: i64| {
            for insn in [Instruction::GlobalGet(global), Instruction::I64Const(n), Instruction::I64Add, Instruction::GlobalSet(global)] {
                f.instruction(&insn);
            }
        };
        let mut reader = func.get_operators_reader()?;
        let mut body = Vec::new();
        while !reader.eof() {
            body.push(self.parse_instruction(&mut reader)?);
        }
        if !self.instructions {
            count(&mut f, 1);
            for insn in &body {
                f.instruction(insn);
            }
        } else {
            // A run starts at the entry and wherever control may arrive other than from
            // the instruction before: a loop's head, a branch's arm, a join, a branch
            // not taken. Its length is added when it starts.
            let starts_after = |insn: &Instruction| {
                matches!(insn, Instruction::Loop(_) | Instruction::If(_) | Instruction::Else | Instruction::End | Instruction::BrIf(_) | Instruction::Block(_))
            };
            let mut run_start = 0;
            for (i, insn) in body.iter().enumerate() {
                if i == run_start {
                    let len = body[i..].iter().position(|x| starts_after(x)).map_or(body.len() - i, |p| p + 1);
                    count(&mut f, len as i64);
                }
                f.instruction(insn);
                if starts_after(insn) {
                    run_start = i + 1;
                }
            }
        }
        code.function(&f);
        Ok(())
    }
}

/// The module with every defined function whose name `counted` accepts counting its
/// calls (with `instructions`, the instructions it executes), and those functions.
pub fn count_calls(module: &[u8], counted: impl Fn(&str) -> bool, instructions: bool) -> Result<(Vec<u8>, Vec<Counted>), String> {
    let (mut imported_funcs, mut globals, mut names) = (0u32, 0u32, BTreeMap::new());
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(imports) => {
                for import in imports {
                    match import.map_err(|e| e.to_string())?.ty {
                        wasmparser::TypeRef::Func(_) => imported_funcs += 1,
                        wasmparser::TypeRef::Global(_) => globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::GlobalSection(section) => globals += section.count(),
            Payload::CustomSection(section) => {
                if let wasmparser::KnownCustom::Name(reader) = section.as_known() {
                    for name in reader {
                        if let Name::Function(map) = name.map_err(|e| e.to_string())? {
                            for naming in map {
                                let naming = naming.map_err(|e| e.to_string())?;
                                names.insert(naming.index, naming.name.to_string());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let chosen: Vec<(u32, String)> = names.into_iter().filter(|(i, n)| *i >= imported_funcs && counted(n)).collect();
    if chosen.is_empty() {
        return Err("the module names no function to count (built without -g?)".into());
    }
    let targets = chosen.iter().enumerate().map(|(n, (i, _))| (i - imported_funcs, globals + n as u32)).collect();
    let mut counting = Counting { targets, first: globals, seen: 0, instructions };
    let mut out = wasm_encoder::Module::new();
    counting.parse_core_module(&mut out, Parser::new(0), module).map_err(|e| e.to_string())?;
    let counted = chosen.into_iter().enumerate().map(|(n, (_, name))| Counted { name, global: global_name(n) }).collect();
    Ok((out.finish(), counted))
}
