"""C code generation: the static activation arena plan and the self-contained C project export."""

from flexround_mcu.codegen.arena import ArenaPlan, Buffer, plan_arena
from flexround_mcu.codegen.render import export_c_project, render_project

__all__ = ["ArenaPlan", "Buffer", "plan_arena", "export_c_project", "render_project"]
