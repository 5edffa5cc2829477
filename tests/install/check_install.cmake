# Installs the already-built library into a scratch prefix, then builds and runs a
# consumer against it twice: with CMake's find_package, and with pkg-config.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# find_package(fiber CONFIG)
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/cmake-build -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
run(${WORK_DIR}/cmake-build/consumer)
if(NOT last_output STREQUAL "0 1 2 3 4 done\n")
  message(FATAL_ERROR "find_package consumer printed: ${last_output}")
endif()

# pkg-config
find_program(PKG_CONFIG pkg-config REQUIRED)
file(GLOB pc_dirs ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
string(REPLACE ";" ":" pc_path "${pc_dirs}")
set(ENV{PKG_CONFIG_PATH} "${pc_path}")
run(${PKG_CONFIG} --cflags --libs --static fiber)
string(STRIP "${last_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CXX} -std=c++20 ${CONSUMER_DIR}/consumer.cpp ${flags} -o ${WORK_DIR}/consumer-pc)
run(${PKG_CONFIG} --variable=libdir fiber)
string(STRIP "${last_output}" libdir)
# A shared libfiber in a scratch prefix is found the way a user would point at it.
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir} ${WORK_DIR}/consumer-pc)
if(NOT last_output STREQUAL "0 1 2 3 4 done\n")
  message(FATAL_ERROR "pkg-config consumer printed: ${last_output}")
endif()
# A C99 program using fiber.h, compiled and linked as C through pkg-config
# (--static: with a static libfiber, the C++ runtime comes from Libs.private).
run(${CC} -std=c99 -Wall -Wextra -pedantic -Werror ${CONSUMER_DIR}/consumer.c ${flags} -o ${WORK_DIR}/consumer-c)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir} ${WORK_DIR}/consumer-c)
if(NOT last_output STREQUAL "1 2 3 finished 6\n")
  message(FATAL_ERROR "C pkg-config consumer printed: ${last_output}")
endif()
message(STATUS "find_package and pkg-config consumers (C++ and C) all built and ran")
