//! Counting allocations: a copy of the module whose allocator entry (`dlmalloc`, which
//! every fresh heap block goes through: `__rust_alloc`, a moving `__rust_realloc`, an
//! aligned allocation) adds one to a new exported global. The copy serves only this
//! count; instructions are counted on the module as built.

use std::convert::Infallible;
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{ConstExpr, GlobalType, Instruction, ValType};
use wasmparser::{Name, Parser, Payload};

/// The global the copy exports: how many blocks the allocator handed out.
pub const COUNTER: &str = "wasm_cost_allocations";
/// The allocator function the counter is added to, by its name in the name section
/// (the build keeps names with `wasm-opt -g`).
const ALLOCATOR: &str = "dlmalloc";

struct Counting {
    /// Index of the allocator in the code section (imports not counted).
    target: u32,
    /// Index the new global gets: after every imported and defined global.
    global: u32,
    /// Code section bodies seen so far.
    seen: u32,
}

impl Reencode for Counting {
    type Error = Infallible;

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        let ty = GlobalType { val_type: ValType::I64, mutable: true, shared: false };
        globals.global(ty, &ConstExpr::i64_const(0));
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        exports.export(COUNTER, wasm_encoder::ExportKind::Global, self.global);
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        let index = self.seen;
        self.seen += 1;
        if index != self.target {
            return reencode::utils::parse_function_body(self, code, func);
        }
        let mut f = self.new_function_with_parsed_locals(&func)?;
        for insn in [Instruction::GlobalGet(self.global), Instruction::I64Const(1), Instruction::I64Add, Instruction::GlobalSet(self.global)] {
            f.instruction(&insn);
        }
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            f.instruction(&self.parse_instruction(&mut reader)?);
        }
        code.function(&f);
        Ok(())
    }
}

/// The module with its allocator counting into the exported global [`COUNTER`].
pub fn count_allocations(module: &[u8]) -> Result<Vec<u8>, String> {
    let (mut imported_funcs, mut globals, mut allocator) = (0u32, 0u32, None);
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
                if let wasmparser::KnownCustom::Name(names) = section.as_known() {
                    for name in names {
                        if let Name::Function(map) = name.map_err(|e| e.to_string())? {
                            for naming in map {
                                let naming = naming.map_err(|e| e.to_string())?;
                                if naming.name == ALLOCATOR {
                                    allocator = Some(naming.index);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let index = allocator.ok_or(format!("the module names no function {ALLOCATOR} (built without -g?)"))?;
    let target = index.checked_sub(imported_funcs).ok_or(format!("{ALLOCATOR} is an import"))?;
    let mut counting = Counting { target, global: globals, seen: 0 };
    let mut out = wasm_encoder::Module::new();
    counting.parse_core_module(&mut out, Parser::new(0), module).map_err(|e| e.to_string())?;
    Ok(out.finish())
}
