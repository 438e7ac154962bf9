# A CMake toolchain file for the GNU Arm Embedded toolchain (arm-none-eabi-gcc on the PATH,
# or in ARM_TOOLCHAIN_DIR/bin): bare-metal Cortex-M. The core's flags (-mcpu, -mfpu,
# -mfloat-abi) are the project's to give, e.g. add_compile_options / add_link_options.
#
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=$PWD/cmake/arm-none-eabi.cmake
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(ARM_TOOLCHAIN_DIR "" CACHE PATH "Folder of the toolchain (holds bin/arm-none-eabi-gcc); empty: the PATH")
if(ARM_TOOLCHAIN_DIR)
  set(_arm_prefix "${ARM_TOOLCHAIN_DIR}/bin/arm-none-eabi-")
else()
  set(_arm_prefix "arm-none-eabi-")
endif()
set(CMAKE_C_COMPILER ${_arm_prefix}gcc)
set(CMAKE_CXX_COMPILER ${_arm_prefix}g++)
set(CMAKE_ASM_COMPILER ${_arm_prefix}gcc)
set(CMAKE_OBJCOPY ${_arm_prefix}objcopy CACHE FILEPATH "")
set(CMAKE_SIZE ${_arm_prefix}size CACHE FILEPATH "")

# No operating system to link a test program against: try_compile builds a library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
