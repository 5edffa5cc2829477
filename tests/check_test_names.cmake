# A test name with a ';' is split in two by CTest (CMake lists), and each half
# then matches no Catch2 test case: "No tests ran", which CTest counts as a pass.
# This fails instead, naming the test cases.
file(GLOB sources ${SOURCE_DIR}/*.cpp)
set(bad "")
foreach(source IN LISTS sources)
  file(READ ${source} text)
  string(REGEX MATCHALL "TEST_CASE\\(\"[^\"]*\"" names "${text}")
  foreach(name IN LISTS names)
    # (a ';' inside the name split it into list items: a name without the closing quote)
    if(NOT name MATCHES "\"$")
      list(APPEND bad "${source}: ${name}")
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "test names with ';' (CTest would never run them):\n${bad}")
endif()
