# The ONNX schema becomes C at build time: protoc-c compiles Debian's
# /usr/include/onnx/onnx.proto (package libonnx-dev) into the build tree, so
# no generated code is committed and the schema follows the installed ONNX.
# Only the loader (src/graph/onnx_graph.c, onnx_tensor.c) includes the result.
find_program(PROTOC_C protoc-c REQUIRED)
set(ONNX_PROTO "/usr/include/onnx/onnx.proto" CACHE FILEPATH "onnx.proto to generate the loader's C from")
if(NOT EXISTS "${ONNX_PROTO}")
  message(FATAL_ERROR "onnx.proto not found at ${ONNX_PROTO}: install libonnx-dev (scripts/setup.sh does)")
endif()
get_filename_component(ONNX_PROTO_DIR "${ONNX_PROTO}" DIRECTORY)
set(ONNX_PB_DIR "${CMAKE_BINARY_DIR}/proto")
file(MAKE_DIRECTORY "${ONNX_PB_DIR}")
add_custom_command(
  OUTPUT "${ONNX_PB_DIR}/onnx.pb-c.c" "${ONNX_PB_DIR}/onnx.pb-c.h"
  COMMAND ${PROTOC_C} --c_out=${ONNX_PB_DIR} -I${ONNX_PROTO_DIR} ${ONNX_PROTO}
  DEPENDS "${ONNX_PROTO}"
  COMMENT "protoc-c: generating C for the ONNX schema")
add_library(onnx_proto OBJECT "${ONNX_PB_DIR}/onnx.pb-c.c")
target_include_directories(onnx_proto PUBLIC "${ONNX_PB_DIR}" ${PROTOBUFC_INCLUDE_DIRS})
set_target_properties(onnx_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
# Generated code: our warning flags are not its business.
target_compile_options(onnx_proto PRIVATE -w)
