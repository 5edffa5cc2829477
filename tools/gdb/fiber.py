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
# pointer, per the frame layout the switch assembly writes (arch/switch_*.S and
# fiber/src/frame/*.h): x86_64 (System V and Windows) and AArch64. On a live
# process it selects frame 0, sets those registers, runs `backtrace`, and sets them
# back (whatever happens in between); on a core file, whose registers cannot be
# written, a Python unwinder makes the fiber's frame the caller of frame 0 and a
# frame filter hides frame 0, so the fiber's frames are numbered from 1.
import re

import gdb

try:
    from gdb.unwinder import Unwinder as _Unwinder
except ImportError:  # a gdb without Python unwinders: core files then get no `fiber bt`
    _Unwinder = object

_STATE_NAMES = ("created", "running", "suspended", "ended")
_DEFAULT_CHUNK_SLOTS = 4096  # fiber::detail::registry_chunk_slots
_DEFAULT_MAX_CHUNKS = 4096   # fiber::detail::registry_max_chunks


class _Arch:
    """Where a suspended switch frame keeps the registers an unwinder needs."""

    def __init__(self, name, sp_reg, pc_reg, caller_sp, pc_slot, slots, fresh_entry_slot):
        self.name = name
        self.sp_reg = sp_reg
        self.pc_reg = pc_reg
        self.caller_sp = caller_sp          # the suspended caller's sp: saved sp + this
        self.pc_slot = pc_slot              # where it resumes: [saved sp + this]
        self.slots = slots                  # other registers: name -> offset from saved sp
        self.fresh_entry_slot = fresh_entry_slot  # a fresh frame: the entry function

    def registers(self, read_word, saved_sp):
        """The suspended frame's registers, as {name: value}."""
        regs = {self.sp_reg: saved_sp + self.caller_sp, self.pc_reg: read_word(saved_sp + self.pc_slot)}
        for reg, offset in self.slots.items():
            regs[reg] = read_word(saved_sp + offset)
        return regs


# x86_64 System V (arch/switch_x86_64_sysv_elf_gas.S, frame/x86_64_sysv_elf_gas.h):
# data +0, mxcsr +8, x87 cw +12, rbp +16, pc +24, frame 32 bytes; the caller
# stepped over its 128-byte red zone before jumping in, so its sp is saved sp +
# 32 + 128. A fresh frame holds arg at +32 and entry at +40. The lean switch saves
# no other register: the code around it keeps nothing live in them.
_X86_64 = _Arch("x86_64", "rsp", "rip", 32 + 128, 24, {"rbp": 16}, 40)
# AArch64 AAPCS64 (arch/switch_arm64_aapcs_elf_gas.S, frame/arm64_aapcs_elf_gas.h):
# data +0, fpcr +8, x19..x28 from +16, x29 +96, x30 (the resume pc) +104, d8..d15
# from +112, frame 176 bytes. A fresh frame holds arg in x19 and entry in x20. (d8-d15
# are left alone: only floating-point locals of the top frame would show them.)
# x86_64 Windows (arch/switch_x86_64_ms_pe_gas.S, frame/x86_64_ms_pe_gas.h): a called
# switch; r15 +216, r14 +224, r13 +232, r12 +240, rsi +248, rdi +256, rbx +264,
# rbp +272, the return address +280, frame 288 bytes. A fresh frame holds arg in
# rbx and entry in r12. (xmm6-xmm15, at +16, are left alone, as on AArch64.)
_X86_64_WINDOWS = _Arch(
    "x86_64 Windows", "rsp", "rip", 288, 280,
    {"r15": 216, "r14": 224, "r13": 232, "r12": 240, "rsi": 248, "rdi": 256, "rbx": 264, "rbp": 272},
    240)
_AARCH64 = _Arch(
    "aarch64", "sp", "pc", 176, 104,
    dict([("x%d" % n, 16 + 8 * (n - 19)) for n in range(19, 29)] + [("x29", 96), ("x30", 104)]),
    24)


def _arch():
    name = gdb.selected_inferior().architecture().name() if hasattr(gdb.Inferior, "architecture") \
        else gdb.newest_frame().architecture().name()
    if name == "i386:x86-64":
        return (_X86_64_WINDOWS if _windows() else _X86_64), name
    if name.startswith("aarch64"):
        return _AARCH64, name
    return None, name


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
        if arch and f.saved_sp:
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
        arch, _ = _arch()
        if not listed:
            gdb.write("No fibers.\n")
            return
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
                where = ("task %#x; " % f.task) + where
            mark = "*" if current_sp is not None and f.contains(current_sp) else " "
            rows.append((mark, str(f.id), f.state, f.name or "-", stack, saved, where))
        header = (" ", "Id", "State", "Name", "Stack", "Saved sp", "Where")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
        for r in [header] + rows:
            cells = [r[i].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
            gdb.write(" ".join(cells).rstrip() + "\n")


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

    def __call__(self, pending_frame):
        if self.armed is None or pending_frame.level() != 0:
            return None
        arch, _ = _arch()
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


def _backtrace_with_unwinder(regs, bt_args):
    """Core file: the fiber's frames as callers of frame 0, which is hidden."""
    unwinder = _core_unwinder()
    unwinder.armed = regs
    gdb.invalidate_cached_frames()
    try:
        gdb.execute("backtrace " + bt_args)
    finally:
        unwinder.armed = None
        gdb.invalidate_cached_frames()


def _asm_backend():
    """Whether the switch is the library's assembly (arch/), whose frame layout this
    script knows, rather than the boost or ucontext fallback."""
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
        arch, arch_name = _arch()
        if arch is None:
            raise gdb.GdbError("fiber bt: not supported on %s (the frame layouts known here are x86_64, "
                               "System V and Windows, and AArch64)" % arch_name)
        if not _asm_backend():
            raise gdb.GdbError("fiber bt: the program switches with the boost or ucontext backend; only the "
                               "assembly backend's frames are known here")
        regs = arch.registers(_read_ptr, f.saved_sp)
        gdb.write("%s, suspended at sp %#x:\n" % (label, f.saved_sp))
        if _is_core():
            _backtrace_with_unwinder(regs, bt_args)
            return
        try:
            _backtrace_with_registers(regs, bt_args)
        except gdb.error as e:
            if "without a process" not in str(e):
                raise
            _backtrace_with_unwinder(regs, bt_args)


InfoFibers()
FiberPrefix()
FiberBacktrace()
