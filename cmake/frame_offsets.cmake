# Writes the frame layout of one port (arch/switch_<port>.h) as JSON, for
# tools/gdb/fiber.py: every FIBER_FRAME_* and FIBER_FRESH_* macro whose value is an
# integer, by name. Run at build time by CMakeLists.txt:
#
#   cmake -DCOMPILER=cc "-DFLAGS=..." -DHEADER=arch/switch_<port>.h -DPORT=<port>
#         "-DINCLUDE_DIRS=..." -DOUTPUT=fiber_frame_offsets.json -P frame_offsets.cmake
#
# The header is read by the compiler that builds the port (a cross compiler in a
# cross build), as the assembly reads it (assembler-with-cpp, so __ASSEMBLER__ is
# defined), so the numbers are exactly those the switch uses; no second copy of the
# layout is kept anywhere. Two passes: `-E -dM` names the macros, then a probe that
# lists each of them is preprocessed, so a value written in terms of others
# ((FIBER_FRAME_SIZE + FIBER_RED_ZONE)) comes out as plain arithmetic, which
# math(EXPR) evaluates with the C integer rules of the values used here.
cmake_minimum_required(VERSION 3.25)

foreach(var COMPILER HEADER PORT OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "frame_offsets.cmake: -D${var}= is required")
  endif()
endforeach()

set(cpp ${COMPILER} ${FLAGS})
foreach(dir IN LISTS INCLUDE_DIRS)
  list(APPEND cpp -I${dir})
endforeach()
list(APPEND cpp -E -x assembler-with-cpp)

function(preprocess out_var)
  execute_process(COMMAND ${cpp} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${cpp};${ARGN}")
    message(FATAL_ERROR "frame_offsets.cmake: the preprocessor failed (${rc}): ${cmd}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# Pass 1: the names. An object-like macro is "#define NAME VALUE"; a function-like
# one has "(" right after its name and is left out, as are empty ones.
preprocess(defines -dM ${HEADER})
string(REGEX MATCHALL "#define FIBER_(FRAME|FRESH)_[A-Za-z0-9_]+ [^\n]*[^ \n][^\n]*" lines "${defines}")
set(names "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^#define ([A-Za-z0-9_]+) .*$" "\\1" name "${line}")
  list(APPEND names ${name})
endforeach()
list(SORT names)
list(REMOVE_DUPLICATES names)
if(NOT names)
  message(FATAL_ERROR "frame_offsets.cmake: ${HEADER} defines no FIBER_FRAME_* or FIBER_FRESH_* macro")
endif()

# Pass 2: each value, fully expanded, on a line of its own that the expansion cannot
# touch (the index, not the name, identifies it: the name would be expanded too).
set(probe "#include \"${HEADER}\"\n")
set(i 0)
foreach(name IN LISTS names)
  string(APPEND probe "fiber_frame_offset_${i} = ${name}\n")
  math(EXPR i "${i} + 1")
endforeach()
set(probe_file ${OUTPUT}.probe.S)
file(WRITE ${probe_file} "${probe}")
preprocess(expanded -P ${probe_file})
file(REMOVE ${probe_file})

set(entries "")
string(REGEX MATCHALL "fiber_frame_offset_[0-9]+ = [^\n]*" values "${expanded}")
foreach(line IN LISTS values)
  string(REGEX MATCH "^fiber_frame_offset_([0-9]+) = (.*)$" _ "${line}")
  list(GET names ${CMAKE_MATCH_1} name)
  set(value "${CMAKE_MATCH_2}")
  # Integer suffixes (0xf8000000u, 8UL) mean nothing to math(EXPR).
  string(REGEX REPLACE "([0-9A-Fa-f])[uUlL]+([^0-9A-Za-z_]|$)" "\\1\\2" value "${value}")
  # Only arithmetic on integer literals: a value that names anything else (a
  # register, a symbol) is not an offset, and is left out.
  string(REGEX MATCHALL "[A-Za-z0-9_]+" words "${value}")
  set(numeric TRUE)
  foreach(word IN LISTS words)
    if(NOT word MATCHES "^(0[xX][0-9A-Fa-f]+|[0-9]+)$")
      set(numeric FALSE)
    endif()
  endforeach()
  if(NOT numeric OR NOT value MATCHES "^[-+*/%()&|^~<> \t0-9A-Fa-fxX]+$")
    continue()
  endif()
  math(EXPR number "${value}")
  list(APPEND entries "    \"${name}\": ${number}")
endforeach()
string(REPLACE ";" ",\n" entries "${entries}")

cmake_path(GET HEADER FILENAME header_name)
file(WRITE ${OUTPUT} "{
  \"about\": \"The frame layout of arch/switch_${PORT}.S, preprocessed out of arch/${header_name} by cmake/frame_offsets.cmake at build time, for tools/gdb/fiber.py. Do not edit: rebuild.\",
  \"port\": \"${PORT}\",
  \"macros\": {
${entries}
  }
}
")
