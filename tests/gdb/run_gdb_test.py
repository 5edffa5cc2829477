#!/usr/bin/env python3
"""tools/gdb/fiber.py and the CFI of the fiber entry frame, under a real gdb, on
examples/gdb_fibers.cpp (which leaves fibers of every kind suspended, then calls
fiber_gdb_breakpoint()). Three gdb sessions:

  1. live, stopped first in walk_tree() inside the generator's fiber, then at
     fiber_gdb_breakpoint() inside the loop's main task: `bt` in both fibers walks
     the fiber's frames and ends at fiber_trampoline, with no "Backtrace stopped";
     `info fibers` lists every fiber with its name and state. Its ids are parsed
     for session 2 (they are deterministic, but not known in advance).
  2. live, at fiber_gdb_breakpoint(): `fiber bt ID` for the suspended generator
     (walk_tree twice, then tree_body, ending at fiber_trampoline), the parked
     tasks (in recv and sleep), the created fiber and the running one; the
     registers are the same before and after, `bt` is unchanged, and the program
     then runs to its normal end (exit 0), so nothing was left changed; a core
     file is saved.
  3. the core file: `info fibers` lists the same fibers; `fiber bt` of the
     generator shows the same frames.
  4. the core file, with the source tree's fiber.py, which has no frame layout
     beside it: `fiber bt` says so and stops, `info fibers` lists the fibers and
     says where they are is not shown; a layout of another port is refused; `set
     fiber-frame-offsets`, then (session 5) $FIBER_GDB_FRAME_OFFSETS, naming the
     build's file make `fiber bt` work.

    run_gdb_test.py --gdb GDB --program gdb_fibers --script BUILD/tools/gdb/fiber.py
                    --source-script tools/gdb/fiber.py
                    --offsets BUILD/tools/gdb/fiber_frame_offsets.json --work-dir DIR

--script is the build tree's copy of fiber.py, with the build's frame layout beside
it (sessions 1-3).

Exits 77 (ctest: skipped) when gdb is not there, or cannot run programs (ptrace
not permitted, as in some containers).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

SKIP = 77
FRAME = re.compile(r"^#(\d+)\s+(?:0x[0-9a-f]+ in )?(.*)$")
MARK = "@@@ "


def gdb_session(args, commands, core=None, script=None, offsets_env=None):
    """Runs gdb in batch mode; returns {marker: output} for each `(marker, command)`.
    FIBER_GDB_FRAME_OFFSETS is offsets_env, or unset."""
    cmd = [args.gdb, "-batch", "-nx", "-iex", "set debuginfod enabled off", "-ex", "set width 0",
           "-ex", "set height 0", "-ex", "source " + (script or args.script)]
    for marker, command in commands:
        cmd += ["-ex", "echo \\n" + MARK + marker + "\\n", "-ex", command]
    cmd += ["-ex", "echo \\n" + MARK + "end\\n"]
    cmd += [args.program] + ([core] if core else [])
    env = dict(os.environ)
    env.pop("FIBER_GDB_FRAME_OFFSETS", None)
    if offsets_env:
        env["FIBER_GDB_FRAME_OFFSETS"] = offsets_env
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env=env)
    sections, current = {"": []}, ""
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):]
            sections[current] = []
        else:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}, proc.stdout


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def parse_fibers(text):
    """`info fibers` rows: {name: {"id", "state", "where", "current"}}; unnamed as "-<id>"."""
    fibers = {}
    lines = text.splitlines()
    header = [i for i, l in enumerate(lines) if re.match(r"^\s+Id\s+State\s+Name\s+Stack", l)]
    check(header, "no `info fibers` header in:\n" + text)
    for line in lines[header[0] + 1:]:
        m = re.match(r"^([ *]) (\d+)\s+(\S+)\s+(\S+)\s+(\[0x[0-9a-f]+, 0x[0-9a-f]+\) \S+ \S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        current, id_, state, name, stack, saved, where = m.groups()
        key = name if name != "-" else "-" + id_
        fibers[key] = {"id": int(id_), "state": state, "where": where, "current": current == "*",
                       "saved": saved, "stack": stack}
    return fibers


def frames(text):
    """The frame lines of a backtrace: [(level, text after the level and pc)]."""
    out = []
    for line in text.splitlines():
        m = FRAME.match(line)
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return out


def function_of(frame_text):
    """The part of a frame line before its arguments' location (" at file:line")."""
    return re.split(r" at /| from /", frame_text)[0]


def check_ends_at_trampoline(what, text):
    fs = frames(text)
    check(fs, f"{what}: no frames in:\n{text}")
    check("Backtrace stopped" not in text and "corrupt stack" not in text,
          f"{what}: the walk did not end cleanly:\n{text}")
    check(function_of(fs[-1][1]).startswith("fiber_trampoline"),
          f"{what}: the last frame is not fiber_trampoline:\n{text}")
    levels = [level for level, _ in fs]
    check(levels == list(range(levels[0], levels[0] + len(levels))), f"{what}: frame levels skip:\n{text}")
    return fs


def check_generator_bt(what, text, first_level):
    fs = check_ends_at_trampoline(what, text)
    check(fs[0][0] == first_level, f"{what}: the first frame is #{fs[0][0]}, expected #{first_level}:\n{text}")
    walks = [f for f in fs if re.search(r"\bwalk_tree\s*\(", function_of(f[1]))]
    check(len(walks) == 2, f"{what}: walk_tree appears {len(walks)} times, expected 2:\n{text}")
    body = [i for i, f in enumerate(fs) if re.search(r"\btree_body\s*\(", function_of(f[1]))]
    check(len(body) == 1, f"{what}: the generator's body (tree_body) is not in the backtrace once:\n{text}")
    # The innermost walk_tree frames come first, then the body that called them.
    check(fs.index(walks[1]) < body[0], f"{what}: tree_body is not the caller of walk_tree:\n{text}")
    check(any("yield" in function_of(f[1]) for f in fs[:fs.index(walks[0])]),
          f"{what}: the generator is not suspended in yield:\n{text}")


def check_listing(what, listing, expected):
    for name, state in expected.items():
        check(name in listing, f"{what}: no fiber named {name}: {listing}")
        check(listing[name]["state"] == state,
              f"{what}: fiber {name} is {listing[name]['state']}, expected {state}")
    created = [f for k, f in listing.items() if f["state"] == "created"]
    check(len(created) == 1, f"{what}: expected one fiber that never started: {listing}")
    check("not started" in created[0]["where"], f"{what}: the created fiber is not said to be unstarted")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gdb", required=True)
    ap.add_argument("--program", required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--source-script", required=True)
    ap.add_argument("--offsets", required=True)
    ap.add_argument("--work-dir", required=True)
    args = ap.parse_args()
    if not args.gdb or args.gdb.endswith("NOTFOUND") or not shutil.which(args.gdb):
        print("gdb not found: skipped")
        return SKIP
    os.makedirs(args.work_dir, exist_ok=True)
    core = os.path.join(args.work_dir, "gdb_fibers.core")
    if os.path.exists(core):
        os.remove(core)
    transcripts = []
    try:
        # Session 1: bt inside two running fibers, and the listing.
        out, raw = gdb_session(args, [
            ("break-walk", "tbreak walk_tree"),
            ("run", "run"),
            ("bt-in-generator", "bt"),
            ("fibers-at-walk", "info fibers"),
            ("break", "break fiber_gdb_breakpoint"),
            ("continue", "continue"),
            ("bt-in-task", "bt"),
            ("fibers", "info fibers"),
            ("kill", "kill"),
        ])
        transcripts.append(("session 1", raw))
        if "Temporary breakpoint 1," not in out["run"] and re.search(r"ptrace|Operation not permitted", out["run"]):
            print(raw)
            print("gdb cannot run programs here (ptrace is not permitted): skipped")
            return SKIP
        check("fiber_gdb_breakpoint" in out["continue"], "session 1: did not stop at fiber_gdb_breakpoint")
        fs = check_ends_at_trampoline("bt inside the generator", out["bt-in-generator"])
        check(re.search(r"\bwalk_tree\b", function_of(fs[0][1])), "bt inside the generator: #0 is not walk_tree")
        check(any("tree_body" in function_of(f[1]) for f in fs), "bt inside the generator: no tree_body")
        at_walk = parse_fibers(out["fibers-at-walk"])
        check(at_walk.get("tree-walker", {}).get("state") == "running" and at_walk["tree-walker"]["current"],
              "at walk_tree: the generator is not listed as the running, current fiber:\n" + out["fibers-at-walk"])
        check("running on thread 1" in at_walk["tree-walker"]["where"], "at walk_tree: no thread for the generator")
        fs = check_ends_at_trampoline("bt inside the main task", out["bt-in-task"])
        check(function_of(fs[0][1]).startswith("fiber_gdb_breakpoint"), "bt inside the main task: #0 is wrong")
        listing = parse_fibers(out["fibers"])
        check_listing("session 1", listing, {"tree-walker": "suspended", "receiver": "suspended",
                                             "sleeper": "suspended", "main-task": "running"})
        check(listing["main-task"]["current"] and "running on thread 1" in listing["main-task"]["where"],
              "session 1: the main task is not the current fiber, running on thread 1")
        check("walk_tree" in listing["tree-walker"]["where"], "session 1: the generator is not said to be in walk_tree")
        for name in ("receiver", "sleeper", "main-task"):
            check(re.search(r"task 0x[0-9a-f]+", listing[name]["where"]), f"session 1: {name} shows no task")
        ids = {name: f["id"] for name, f in listing.items()}
        created_id = [f["id"] for f in listing.values() if f["state"] == "created"][0]

        # Session 2: fiber bt by id, registers untouched, the program still runs.
        out, raw = gdb_session(args, [
            ("break", "break fiber_gdb_breakpoint"),
            ("run", "run"),
            ("fibers", "info fibers"),
            ("regs-before", "info registers"),
            ("bt-before", "bt"),
            ("fiber-bt-generator", "fiber bt %d" % ids["tree-walker"]),
            ("regs-after", "info registers"),
            ("fiber-bt-receiver", "fiber bt %d" % ids["receiver"]),
            ("fiber-bt-sleeper", "fiber bt %d" % ids["sleeper"]),
            ("fiber-bt-created", "fiber bt %d" % created_id),
            ("fiber-bt-running", "fiber bt %d" % ids["main-task"]),
            ("fiber-bt-missing", "fiber bt 999999"),
            ("regs-end", "info registers"),
            ("bt-after", "bt"),
            ("gcore", "gcore " + core),
            ("continue", "continue"),
        ])
        transcripts.append(("session 2", raw))
        again = parse_fibers(out["fibers"])
        check({k: (v["id"], v["state"]) for k, v in again.items()}
              == {k: (v["id"], v["state"]) for k, v in listing.items()},
              "session 2: the fibers differ from session 1's")
        check_generator_bt("fiber bt (generator)", out["fiber-bt-generator"], 0)
        fs = check_ends_at_trampoline("fiber bt (receiver)", out["fiber-bt-receiver"])
        check(any(re.search(r"channel<int>::recv", function_of(f[1])) for f in fs),
              "fiber bt (receiver): not parked in channel::recv:\n" + out["fiber-bt-receiver"])
        fs = check_ends_at_trampoline("fiber bt (sleeper)", out["fiber-bt-sleeper"])
        check(any(re.search(r"sleep_(until|for)", function_of(f[1])) for f in fs),
              "fiber bt (sleeper): not parked in sleep_for:\n" + out["fiber-bt-sleeper"])
        check("has not started" in out["fiber-bt-created"], "fiber bt (created): " + out["fiber-bt-created"])
        check(re.search(r"is running on thread 1: use `bt` in that thread", out["fiber-bt-running"]),
              "fiber bt (running): " + out["fiber-bt-running"])
        check("no live fiber 999999" in out["fiber-bt-missing"], "fiber bt (no such fiber): " + out["fiber-bt-missing"])
        check(out["regs-before"].strip() and out["regs-before"] == out["regs-after"] == out["regs-end"],
              "session 2: the registers changed across fiber bt")
        check(frames(out["bt-before"]) and out["bt-before"] == out["bt-after"],
              "session 2: bt differs after fiber bt")
        check(re.search(r"exited normally", out["continue"]),
              "session 2: the program did not run to its normal end after fiber bt:\n" + out["continue"])
        check(os.path.exists(core), "session 2: no core file")

        # Session 3: the core file.
        out, raw = gdb_session(args, [
            ("fibers", "info fibers"),
            ("fiber-bt-generator", "fiber bt %d" % ids["tree-walker"]),
            ("fiber-bt-receiver", "fiber bt %d" % ids["receiver"]),
            ("bt", "bt"),
        ], core=core)
        transcripts.append(("session 3 (core file)", raw))
        from_core = parse_fibers(out["fibers"])
        check({k: (v["id"], v["state"]) for k, v in from_core.items()}
              == {k: (v["id"], v["state"]) for k, v in listing.items()},
              "core file: the fibers differ from the live process's")
        # Frame 0 is the thread's own, hidden: the fiber's frames start at #1.
        check_generator_bt("fiber bt (generator, core file)", out["fiber-bt-generator"], 1)
        check_ends_at_trampoline("fiber bt (receiver, core file)", out["fiber-bt-receiver"])
        fs = check_ends_at_trampoline("bt (core file, after fiber bt)", out["bt"])
        check(function_of(fs[0][1]).startswith("fiber_gdb_breakpoint"), "core file: bt after fiber bt is wrong")

        # Session 4: no frame layout beside the script, a wrong one, then the right one.
        with open(args.offsets) as f:
            layout = json.load(f)
        other = "arm64_aapcs_elf_gas" if layout["port"] != "arm64_aapcs_elf_gas" else "x86_64_sysv_elf_gas"
        wrong = os.path.join(args.work_dir, "other_port_offsets.json")
        with open(wrong, "w") as f:
            json.dump({"port": other, "macros": layout["macros"]}, f)
        out, raw = gdb_session(args, [
            ("fiber-bt-none", "fiber bt %d" % ids["tree-walker"]),
            ("fibers-none", "info fibers"),
            ("set-wrong", "set fiber-frame-offsets " + wrong),
            ("fiber-bt-wrong", "fiber bt %d" % ids["tree-walker"]),
            ("set", "set fiber-frame-offsets " + args.offsets),
            ("fiber-bt-set", "fiber bt %d" % ids["tree-walker"]),
        ], core=core, script=args.source_script)
        transcripts.append(("session 4 (core file, source tree's fiber.py)", raw))
        check("fiber bt: no fiber_frame_offsets.json" in out["fiber-bt-none"] and not frames(out["fiber-bt-none"]),
              "no layout: fiber bt does not say the layout is missing:\n" + out["fiber-bt-none"])
        check({k: v["state"] for k, v in parse_fibers(out["fibers-none"]).items()}
              == {k: v["state"] for k, v in listing.items()}, "no layout: info fibers lists other fibers")
        check("is not shown: no fiber_frame_offsets.json" in out["fibers-none"],
              "no layout: info fibers does not say where fibers are is unknown:\n" + out["fibers-none"])
        check("use the fiber_frame_offsets.json of the program's build" in out["fiber-bt-wrong"]
              and not frames(out["fiber-bt-wrong"]),
              "another port's layout: fiber bt does not refuse it:\n" + out["fiber-bt-wrong"])
        check_generator_bt("fiber bt (set fiber-frame-offsets)", out["fiber-bt-set"], 1)

        # Session 5: the layout named by the environment.
        out, raw = gdb_session(args, [
            ("fiber-bt-env", "fiber bt %d" % ids["tree-walker"]),
        ], core=core, script=args.source_script, offsets_env=args.offsets)
        transcripts.append(("session 5 (core file, FIBER_GDB_FRAME_OFFSETS)", raw))
        check_generator_bt("fiber bt (FIBER_GDB_FRAME_OFFSETS)", out["fiber-bt-env"], 1)
    except Failure as e:
        for label, raw in transcripts:
            print("==== %s ====\n%s" % (label, raw))
        print("FAILED: %s" % e)
        return 1
    for label, raw in transcripts:
        print("==== %s ====\n%s" % (label, raw))
    print("gdb test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
