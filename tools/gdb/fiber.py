# gdb support for the fiber library: lists the live fibers of a process (or a core
# file) and prints the backtrace of a suspended one without resuming it.
#
#   (gdb) source tools/gdb/fiber.py
#   (gdb) info fibers            every live fiber: id, state, name, stack, saved sp, where
#   (gdb) fiber bt 3             the backtrace of fiber 3 (also: fiber bt 3 full, -5, ...)
#   (gdb) fiber bt tree-walker   the same, by name
#
# What it reads (fiber/include/fiber/context.hpp and fiber/src/registry.hpp; keep in
# step with them):
#   - fiber_debug_registry (extern "C"): chunks[] of pointers to arrays of
#     std::atomic<record_base*> (registry_chunk_slots each; null: a free slot), and
#     high_water, the number of slots ever handed out;
#   - fiber::detail::record_base: id, name, state (fiber_state: created, running,
#     suspended, ended), stack_base, stack_size, saved_sp (where a suspended fiber's
#     switch frame is), task (the event_loop task it runs, if any);
#   - fiber_debug_threads (extern "C", if the library has it): the list of every
#     thread's thread_state, whose `running` is the fiber the thread runs. A record
#     does not store "running" (the switch would have to write it each time), so a
#     fiber is running when a thread_state points at it, or when a thread's stack
#     pointer is inside its stack (which also tells which thread runs it).
# Memory is read raw (gdb.Inferior.read_memory), so the layout of std::atomic does
# not matter; with the library's debug info (it is built RelWithDebInfo) field
# offsets come from the types, without it from the natural layout of record_base.
#
# `fiber bt` rebuilds the registers of the suspended frame from its saved stack
# pointer, per the frame layout the switch assembly writes (arch/switch_<port>.S,
# its offsets in arch/switch_<port>.h): x86_64 (System V and Windows) and AArch64.
# On a live process it selects frame 0, sets those registers, runs `backtrace`, and
# sets them back (whatever happens in between); on a core file, whose registers
# cannot be written, a Python unwinder makes the fiber's frame the caller of frame 0
# and a frame filter hides frame 0, so the fiber's frames are numbered from 1.
#
# The offsets are not written down here: the build preprocesses them out of the
# port's header into fiber_frame_offsets.json (cmake/frame_offsets.cmake), so they
# are the ones the program's switch was assembled with. This script looks for that
# file, first match wins:
#   (gdb) set fiber-frame-offsets <build>/tools/gdb/fiber_frame_offsets.json
#   FIBER_GDB_FRAME_OFFSETS=<that path> in gdb's environment
#   fiber_frame_offsets.json beside this script: the build copies the script to
#   <build>/tools/gdb/ next to the file, so `source <build>/tools/gdb/fiber.py`
#   needs nothing else.
# Without it `fiber bt` stops and says so, and `info fibers` leaves out where
# suspended fibers are.
import json
import os
import re

import gdb

try:
    from gdb.unwinder import Unwinder as _Unwinder
except ImportError:  # a gdb without Python unwinders: core files then get no `fiber bt`
    _Unwinder = object

_STATE_NAMES = ("created", "running", "suspended", "ended")
_DEFAULT_CHUNK_SLOTS = 4096  # fiber::detail::registry_chunk_slots
_DEFAULT_MAX_CHUNKS = 4096   # fiber::detail::registry_max_chunks


_OFFSETS_FILE = "fiber_frame_offsets.json"
_OFFSETS_ENV = "FIBER_GDB_FRAME_OFFSETS"
_OFFSETS_PARAMETER = "fiber-frame-offsets"
_SCRIPT_DIRS = []  # where this script was sourced from (and where its symlink points)
if "__file__" in globals():
    for _d in (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.realpath(__file__))):
        if _d not in _SCRIPT_DIRS:
            _SCRIPT_DIRS.append(_d)

# What gdb calls things, by the ISA that begins a port's name (arch/switch_<isa>_...):
# the architecture name it reports, and its names for the stack pointer and pc. The
# other registers are named by the port's header (FIBER_FRAME_UNWIND_<register>).
_ISAS = {
    "x86_64": ("i386:x86-64", "rsp", "rip"),
    "arm64": ("aarch64", "sp", "pc"),
}


class FrameOffsetsError(Exception):
    """The frame layout is not there, or does not fit the program: said to the user
    instead of guessing one."""


class _Arch:
    """Where a suspended switch frame keeps the registers an unwinder needs, as
    fiber_frame_offsets.json gives them."""

    def __init__(self, path, port, macros):
        self.path = path
        self.port = port
        isa = [i for i in _ISAS if port.startswith(i + "_")]
        if not isa:
            raise FrameOffsetsError("%s is for arch/switch_%s.S, whose frames fiber bt cannot rebuild "
                                    "(gdb's register names are known here for %s only)"
                                    % (path, port, ", ".join(sorted(_ISAS))))
        self.isa = isa[0]
        self.gdb_arch, self.sp_reg, self.pc_reg = _ISAS[self.isa]
        self.windows = "_ms_" in port

        def need(name):
            if name not in macros:
                raise FrameOffsetsError("%s has no %s: arch/switch_%s.h does not say where a debugger finds "
                                        "it, so fiber bt does not support that port" % (path, name, port))
            return macros[name]

        self.caller_sp = need("FIBER_FRAME_CALLER_SP")    # the suspended caller's sp: saved sp + this
        self.pc_slot = need("FIBER_FRAME_PC")             # where it resumes: [saved sp + this]
        self.fresh_entry_slot = macros.get("FIBER_FRESH_ENTRY")  # a fresh frame: the entry function
        prefix = "FIBER_FRAME_UNWIND_"
        self.slots = {name[len(prefix):].lower(): offset    # other registers: name -> offset
                      for name, offset in macros.items() if name.startswith(prefix)}

    def registers(self, read_word, saved_sp):
        """The suspended frame's registers, as {name: value}."""
        regs = {self.sp_reg: saved_sp + self.caller_sp, self.pc_reg: read_word(saved_sp + self.pc_slot)}
        for reg, offset in self.slots.items():
            regs[reg] = read_word(saved_sp + offset)
        return regs


class _FrameOffsetsParameter(gdb.Parameter):
    """The frame layout file tools/gdb/fiber.py reads (fiber_frame_offsets.json, written
by the build into <build>/tools/gdb/). Empty: $FIBER_GDB_FRAME_OFFSETS, else the
file beside fiber.py."""

    set_doc = "Set the fiber_frame_offsets.json that fiber bt reads the switch frame's layout from."
    show_doc = "Show the fiber_frame_offsets.json that fiber bt reads the switch frame's layout from."

    def __init__(self):
        super().__init__(_OFFSETS_PARAMETER, gdb.COMMAND_DATA, gdb.PARAM_OPTIONAL_FILENAME)
        self.value = ""

    def get_set_string(self):
        return ""

    def get_show_string(self, svalue):
        return svalue or "(empty: $%s, else %s beside fiber.py)" % (_OFFSETS_ENV, _OFFSETS_FILE)


_offsets_parameter = _FrameOffsetsParameter()
_loaded = {}  # path -> (mtime, _Arch)


def _offsets_path():
    """The file to read, and how it was chosen (for messages)."""
    value = _offsets_parameter.value
    if value:
        return os.path.expanduser(value), "set %s" % _OFFSETS_PARAMETER
    value = os.environ.get(_OFFSETS_ENV)
    if value:
        return os.path.expanduser(value), "$%s" % _OFFSETS_ENV
    for d in _SCRIPT_DIRS:
        path = os.path.join(d, _OFFSETS_FILE)
        if os.path.exists(path):
            return path, "beside fiber.py"
    return None, None


def _load_offsets():
    path, how = _offsets_path()
    if path is None:
        where = " or ".join(_SCRIPT_DIRS) or "this script's directory"
        raise FrameOffsetsError(
            "no %s: it is not in %s, and neither `set %s` nor $%s names one. The build writes it "
            "(asm backend) to <build>/tools/gdb/, beside a copy of fiber.py: source that copy, or "
            "`set %s <build>/tools/gdb/%s`" % (_OFFSETS_FILE, where, _OFFSETS_PARAMETER, _OFFSETS_ENV,
                                               _OFFSETS_PARAMETER, _OFFSETS_FILE))
    try:
        mtime = os.stat(path).st_mtime
    except OSError as e:
        raise FrameOffsetsError("cannot read %s (%s): %s" % (path, how, e.strerror))
    cached = _loaded.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        with open(path) as f:
            data = json.load(f)
        port, macros = data["port"], data["macros"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FrameOffsetsError("%s (%s) is not a frame layout written by the build: %s" % (path, how, e))
    arch = _Arch(path, port, macros)
    _loaded[path] = (mtime, arch)
    return arch


def _arch():
    """The frame layout of the program's switch, checked against the program: the
    file describes one port (that of the build that wrote it)."""
    arch = _load_offsets()
    name = gdb.selected_inferior().architecture().name() if hasattr(gdb.Inferior, "architecture") \
        else gdb.newest_frame().architecture().name()
    source = _switch_source()
    if source is not None and re.search(r"switch_\w+\.S$", source):
        program_port = re.search(r"switch_(\w+)\.S$", source).group(1)
        if program_port != arch.port:
            raise FrameOffsetsError("the program switches with arch/switch_%s.S, but %s is the layout of "
                                    "arch/switch_%s.S: use the %s of the program's build"
                                    % (program_port, arch.path, arch.port, _OFFSETS_FILE))
    windows = _windows()
    if not name.startswith(arch.gdb_arch) or arch.windows != windows:
        raise FrameOffsetsError("%s is the layout of arch/switch_%s.S, which does not run on this program "
                                "(%s%s): use the %s of the program's build"
                                % (arch.path, arch.port, name, ", Windows" if windows else "", _OFFSETS_FILE))
    return arch


def _switch_source():
    """The file fiber_switch_context comes from (None without line info)."""
    try:
        pc = int(gdb.parse_and_eval("(unsigned long long)&fiber_switch_context"))
    except gdb.error:
        return None
    sal = gdb.find_pc_line(pc)
    return sal.symtab.filename if sal.symtab is not None else None


def _windows():
    """Whether the program is a Windows one. gdb's OS ABI says so, unless a remote
    stub (wine's winedbg --gdb) claims otherwise; the switch's source file, or the
    program's name, tells then."""
    if re.search(r"currently \"(Windows|Cygwin)\"", gdb.execute("show osabi", to_string=True)):
        return True
    source = _switch_source()
    if source is not None:
        return "_ms_pe_" in source
    program = gdb.current_progspace().filename or ""
    return program.lower().endswith(".exe")


def _ptr_size():
    return gdb.lookup_type("void").pointer().sizeof


_endian = None  # "little" or "big", asked once per command (see _begin)


def _begin():
    """Called at the start of each command: the target may have changed since."""
    global _endian
    _endian = "big" if "big endian" in gdb.execute("show endian", to_string=True) else "little"


def _read_bytes(addr, size):
    return bytes(gdb.selected_inferior().read_memory(addr, size))


def _uint(raw, offset, size):
    return int.from_bytes(raw[offset:offset + size], _endian)


def _read_uint(addr, size):
    return _uint(_read_bytes(addr, size), 0, size)


def _read_ptr(addr):
    return _read_uint(addr, _ptr_size())


def _address_of(symbol):
    """The address of a global (extern "C") variable, or None if there is none."""
    try:
        return int(gdb.parse_and_eval("(unsigned long long)&%s" % symbol))
    except gdb.error:
        return None


def _lookup_type(name):
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        return None


def _field_offsets(type_, names):
    """{field: byte offset} of a struct type, for the fields it has."""
    offsets = {}
    for field in type_.strip_typedefs().fields():
        if field.name in names and hasattr(field, "bitpos"):
            offsets[field.name] = field.bitpos // 8
    return offsets


def _align(offset, alignment):
    return (offset + alignment - 1) // alignment * alignment


class _RecordLayout:
    """Offsets of record_base's fields: from the debug info, else the natural layout."""

    FIELDS = ("id", "stack_base", "stack_size", "saved_sp", "task", "state", "name")

    def __init__(self):
        rb = _lookup_type("fiber::detail::record_base")
        if rb is not None:
            self.offsets = _field_offsets(rb, self.FIELDS)
            name_field = [f for f in rb.strip_typedefs().fields() if f.name == "name"]
            self.name_size = name_field[0].type.sizeof if name_field else 32
            self.from_debug_info = True
        else:
            # struct record_base { void (*release)(...); uint64_t id; void* stack_base;
            #   size_t stack_size; void* saved_sp; const void* task; uint32_t slot;
            #   unsigned valgrind_stack; fiber_state state (1 byte); char name[32]; }
            p = _ptr_size()
            u64 = gdb.lookup_type("unsigned long long")
            u64_align = u64.alignof if hasattr(u64, "alignof") else 8
            o = {}
            at = p
            at = _align(at, u64_align); o["id"] = at; at += 8
            at = _align(at, p); o["stack_base"] = at; at += p
            o["stack_size"] = at; at += p
            o["saved_sp"] = at; at += p
            o["task"] = at; at += p
            at += 4 + 4  # slot, valgrind_stack
            o["state"] = at; at += 1
            o["name"] = at
            self.offsets = o
            self.name_size = 32
            self.from_debug_info = False
        missing = [f for f in self.FIELDS if f not in self.offsets]
        if missing:
            raise gdb.GdbError("fiber: record_base has no field %s: tools/gdb/fiber.py is out of step with "
                               "fiber/include/fiber/context.hpp" % ", ".join(missing))
        self.size = max(self.offsets.values()) + max(self.name_size, 8)  # bytes read per record


class Fiber:
    def __init__(self, address, layout):
        p = _ptr_size()
        o = layout.offsets
        # One read for the whole record: there may be many fibers.
        raw = _read_bytes(address, layout.size)
        self.address = address
        self.id = _uint(raw, o["id"], 8)
        self.stack_base = _uint(raw, o["stack_base"], p)
        self.stack_size = _uint(raw, o["stack_size"], p)
        self.saved_sp = _uint(raw, o["saved_sp"], p)
        self.task = _uint(raw, o["task"], p)
        state = _uint(raw, o["state"], 1)
        self.state = _STATE_NAMES[state] if state < len(_STATE_NAMES) else "state %d" % state
        name = raw[o["name"]:o["name"] + layout.name_size]
        self.name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        self.thread = None  # the gdb thread running it, if any

    def contains(self, addr):
        return self.stack_base <= addr < self.stack_base + self.stack_size


def _registry_fibers():
    """Every fiber the registry lists, in slot order."""
    base = _address_of("fiber_debug_registry")
    if base is None:
        raise gdb.GdbError("fiber: no symbol fiber_debug_registry: the program does not use the fiber "
                           "library, or has not been started (try again once it runs)")
    p = _ptr_size()
    max_chunks, high_water_at = _DEFAULT_MAX_CHUNKS, _DEFAULT_MAX_CHUNKS * p
    reg_type = _lookup_type("fiber_debug_registry_t")
    if reg_type is not None:
        fields = {f.name: f for f in reg_type.strip_typedefs().fields()}
        if "chunks" in fields and "high_water" in fields:
            lo, hi = fields["chunks"].type.strip_typedefs().range()
            max_chunks = hi - lo + 1
            high_water_at = fields["high_water"].bitpos // 8
    chunk_slots = _DEFAULT_CHUNK_SLOTS
    try:
        chunk_slots = int(gdb.parse_and_eval("fiber::detail::registry_chunk_slots"))
    except gdb.error:
        pass
    high_water = _read_uint(base + high_water_at, 4)
    layout = _RecordLayout()
    fibers = []
    # A chunk's slots in one read each: only up to high_water.
    for chunk_index in range(min((high_water + chunk_slots - 1) // chunk_slots, max_chunks)):
        chunk = _read_ptr(base + chunk_index * p)
        if chunk == 0:
            break
        count = min(chunk_slots, high_water - chunk_index * chunk_slots)
        raw = _read_bytes(chunk, count * p)
        for i in range(count):
            record = _uint(raw, i * p, p)
            if record:
                fibers.append(Fiber(record, layout))
    return fibers


def _running_records():
    """Addresses of the records some thread runs now (fiber_debug_threads)."""
    head_at = _address_of("fiber_debug_threads")
    ts = _lookup_type("fiber::detail::thread_state")
    if head_at is None or ts is None:
        return set()
    offsets = _field_offsets(ts, ("running", "next_thread"))
    if len(offsets) != 2:
        return set()
    running = set()
    t = _read_ptr(head_at)
    seen = set()
    while t and t not in seen and len(seen) < 1000000:
        seen.add(t)
        r = _read_ptr(t + offsets["running"])
        if r:
            running.add(r)
        t = _read_ptr(t + offsets["next_thread"])
    return running


def _thread_sps():
    """[(gdb thread, its innermost sp)] for every thread of the inferior."""
    result = []
    selected_thread = gdb.selected_thread()
    selected_frame = gdb.selected_frame() if selected_thread else None
    try:
        for thread in gdb.selected_inferior().threads():
            try:
                thread.switch()
                result.append((thread, int(gdb.newest_frame().read_register("sp"))))
            except gdb.error:
                pass
    finally:
        if selected_thread:
            selected_thread.switch()
            if selected_frame is not None and selected_frame.is_valid():
                selected_frame.select()
    return result


def fibers():
    """Every live fiber, with its state, and for a running one the thread running it."""
    _begin()
    result = _registry_fibers()
    running = _running_records()
    sps = _thread_sps()
    for f in result:
        for thread, sp in sps:
            if f.contains(sp):
                f.thread = thread
                break
        # A thread's stack pointer inside its stack also says so (and is all there
        # is without the library's debug info).
        if f.address in running or f.thread is not None:
            f.state = "running"
    return result


def _symbol_at(pc):
    """`function + offset` for a code address (minimal symbols suffice)."""
    try:
        text = gdb.execute("info symbol %#x" % pc, to_string=True).strip()
    except gdb.error:
        return "%#x" % pc
    if text.startswith("No symbol"):
        return "%#x" % pc
    return re.sub(r" in section \S+( of .*)?$", "", text.splitlines()[0])


def _where(f, arch):
    if f.state == "running":
        return "running on thread %d" % f.thread.num if f.thread else "running"
    if f.state == "created":
        if arch and arch.fresh_entry_slot is not None and f.saved_sp:
            try:
                return "not started; entry " + _symbol_at(_read_ptr(f.saved_sp + arch.fresh_entry_slot))
            except gdb.MemoryError:
                pass
        return "not started"
    if f.state == "suspended" and arch and f.saved_sp:
        try:
            return "at " + _symbol_at(_read_ptr(f.saved_sp + arch.pc_slot))
        except gdb.MemoryError:
            return ""
    return ""


def _human_size(n):
    """64 KiB, 1 MiB, 12000 bytes: the largest unit that divides the size."""
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or n % 1024:
            return "%d %s" % (n, unit)
        n //= 1024
    return "%d GiB" % n


class InfoFibers(gdb.Command):
    """List every live fiber: id, state, name, stack [low, high), saved stack pointer,
where it is (the function it is suspended in, the thread running it, or its entry
if it has not started) and, for an event_loop task, the task."""

    def __init__(self):
        super().__init__("info fibers", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        _begin()
        listed = fibers()
        if not listed:
            gdb.write("No fibers.\n")
            return
        # Where suspended and unstarted fibers are needs the frame layout; the list
        # itself does not. The boost and ucontext backends have no such frame.
        arch, layout_problem = None, None
        if _asm_backend():
            try:
                arch = _arch()
            except FrameOffsetsError as e:
                layout_problem = str(e)
        current_sp = None
        try:
            current_sp = int(gdb.newest_frame().read_register("sp"))
        except gdb.error:
            pass
        rows = []
        for f in listed:
            stack = "[%#x, %#x) %s" % (f.stack_base, f.stack_base + f.stack_size, _human_size(f.stack_size))
            saved = "-" if f.state == "running" or not f.saved_sp else "%#x" % f.saved_sp
            where = _where(f, arch)
            if f.task:
                where = "task %#x" % f.task + ("; " + where if where else "")
            mark = "*" if current_sp is not None and f.contains(current_sp) else " "
            rows.append((mark, str(f.id), f.state, f.name or "-", stack, saved, where))
        header = (" ", "Id", "State", "Name", "Stack", "Saved sp", "Where")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
        for r in [header] + rows:
            cells = [r[i].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
            gdb.write(" ".join(cells).rstrip() + "\n")
        if layout_problem:
            gdb.write("(where suspended and unstarted fibers are is not shown: %s)\n" % layout_problem)


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _FiberUnwinder(_Unwinder):
    """While armed (core files), makes the suspended fiber's frame the caller of
    frame 0, whatever frame 0 is."""

    def __init__(self):
        super().__init__("fiber-bt")
        self.armed = None  # {register: value}
        self.arch = None   # the _Arch those registers come from

    def __call__(self, pending_frame):
        if self.armed is None or pending_frame.level() != 0:
            return None
        arch = self.arch
        pc = pending_frame.read_register(arch.pc_reg)
        sp = pending_frame.read_register(arch.sp_reg)
        # Frame 0's id: the highest stack address, so that gdb never takes the
        # fiber's frames, on another stack, for frames inner to it.
        top = gdb.Value((1 << (8 * _ptr_size())) - 1).cast(sp.type)
        info = pending_frame.create_unwind_info(_FrameId(top, pc))
        for reg, value in self.armed.items():
            reg_type = pending_frame.read_register(reg).type
            info.add_saved_register(reg, gdb.Value(value).cast(reg_type))
        return info


class _HideFrameZero:
    """While the unwinder is armed, `backtrace` starts at frame 1: the fiber's."""

    def __init__(self, unwinder):
        self.name = "fiber-bt"
        self.priority = 100
        self.enabled = True
        self.unwinder = unwinder

    def filter(self, frames):
        if self.unwinder.armed is None:
            return frames
        next(frames, None)
        return frames


_unwinder = None


def _core_unwinder():
    global _unwinder
    if _unwinder is None:
        if _Unwinder is object:
            raise gdb.GdbError("fiber bt: this gdb has no Python unwinders, needed for a core file")
        _unwinder = _FiberUnwinder()
        gdb.unwinder.register_unwinder(None, _unwinder, replace=True)
        gdb.frame_filters["fiber-bt"] = _HideFrameZero(_unwinder)
    return _unwinder


def _is_core():
    inferior = gdb.selected_inferior()
    connection = getattr(inferior, "connection", None)
    return connection is not None and connection.type == "core"


def _select_level(level):
    frame = gdb.newest_frame()
    while frame is not None and frame.level() < level:
        frame = frame.older()
    if frame is not None:
        frame.select()


def _backtrace_with_registers(regs, bt_args):
    """Live process: frame 0 takes the fiber's registers for one `backtrace`."""
    selected = gdb.selected_frame()
    level = selected.level()
    newest = gdb.newest_frame()
    newest.select()
    saved = [(reg, int(newest.read_register(reg))) for reg in regs]
    written = []
    try:
        for reg, value in regs.items():
            gdb.execute("set var $%s = %#x" % (reg, value), to_string=True)
            written.append(reg)
        gdb.execute("backtrace " + bt_args)
    finally:
        # Exactly what was there, in the reverse order, whatever happened above.
        for reg, value in reversed(saved):
            if reg in written:
                gdb.execute("set var $%s = %#x" % (reg, value), to_string=True)
        _select_level(level)


def _backtrace_with_unwinder(arch, regs, bt_args):
    """Core file: the fiber's frames as callers of frame 0, which is hidden."""
    unwinder = _core_unwinder()
    unwinder.arch = arch
    unwinder.armed = regs
    gdb.invalidate_cached_frames()
    try:
        gdb.execute("backtrace " + bt_args)
    finally:
        unwinder.armed = None
        gdb.invalidate_cached_frames()


def _asm_backend():
    """Whether the switch is the library's assembly (arch/), whose frame layout the
    build describes, rather than the boost or ucontext fallback."""
    source = _switch_source()
    if source is None:
        return True  # no line info: assume the default backend
    return "switch_" in source and source.endswith(".S")


class FiberPrefix(gdb.Command):
    """Commands for the fiber library's fibers: fiber bt."""

    def __init__(self):
        super().__init__("fiber", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class FiberBacktrace(gdb.Command):
    """fiber bt ID|NAME [backtrace arguments]
Print the backtrace of a suspended fiber (its id or name as `info fibers` shows
them) without resuming it. Other arguments go to `backtrace` (full, -N, N, ...)."""

    def __init__(self):
        super().__init__("fiber bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        _begin()
        argv = arg.split(None, 1)
        if not argv:
            raise gdb.GdbError("usage: fiber bt ID|NAME [backtrace arguments]")
        key, bt_args = argv[0], (argv[1] if len(argv) > 1 else "")
        listed = fibers()
        if key.isdigit():
            match = [f for f in listed if f.id == int(key)]
        else:
            match = [f for f in listed if f.name == key]
        if not match:
            raise gdb.GdbError("fiber bt: no live fiber %s (see `info fibers`)" % key)
        if len(match) > 1:
            raise gdb.GdbError("fiber bt: %d fibers are named %s: give an id" % (len(match), key))
        f = match[0]
        label = "fiber %d" % f.id + (" (%s)" % f.name if f.name else "")
        if f.state == "running":
            if f.thread is not None:
                gdb.write("%s is running on thread %d: use `bt` in that thread (thread %d)\n"
                          % (label, f.thread.num, f.thread.num))
            else:
                gdb.write("%s is running: use `bt` in the thread that runs it\n" % label)
            return
        if f.state == "created":
            gdb.write("%s has not started: it has no frames yet\n" % label)
            return
        if f.state != "suspended":
            gdb.write("%s is %s: it has no frames\n" % (label, f.state))
            return
        if not _asm_backend():
            raise gdb.GdbError("fiber bt: the program switches with the boost or ucontext backend; only the "
                               "assembly backend's frames can be rebuilt")
        try:
            arch = _arch()
        except FrameOffsetsError as e:
            raise gdb.GdbError("fiber bt: %s" % e)
        regs = arch.registers(_read_ptr, f.saved_sp)
        gdb.write("%s, suspended at sp %#x:\n" % (label, f.saved_sp))
        if _is_core():
            _backtrace_with_unwinder(arch, regs, bt_args)
            return
        try:
            _backtrace_with_registers(regs, bt_args)
        except gdb.error as e:
            if "without a process" not in str(e):
                raise
            _backtrace_with_unwinder(arch, regs, bt_args)


InfoFibers()
FiberPrefix()
FiberBacktrace()
