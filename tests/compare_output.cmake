# Runs PROGRAM (through EMULATOR when cross-compiling; with the ;-separated
# arguments ARGS) and requires that its standard output equals the file EXPECTED
# byte for byte.
execute_process(COMMAND ${EMULATOR} ${PROGRAM} ${ARGS}
  OUTPUT_VARIABLE actual
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}")
endif()
file(READ ${EXPECTED} expected)
if(NOT actual STREQUAL expected)
  message(FATAL_ERROR "output of ${PROGRAM} differs from ${EXPECTED}\n--- expected\n${expected}--- actual\n${actual}---")
endif()
message(STATUS "output matches ${EXPECTED}")
