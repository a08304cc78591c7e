# Compiler flags shared by every target of the project, collected on one interface target.
add_library(outpost_flags INTERFACE)
add_library(outpost::flags ALIAS outpost_flags)

target_compile_options(outpost_flags INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                               -Wold-style-cast -Wcast-align -Woverloaded-virtual)
if(OUTPOST_WERROR)
  target_compile_options(outpost_flags INTERFACE -Werror)
endif()

if(OUTPOST_SANITIZE)
  target_compile_options(outpost_flags INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=undefined)
  target_link_options(outpost_flags INTERFACE -fsanitize=address,undefined)
endif()

# Hardened release flags: stack protector, fortified libc calls, full RELRO, PIE.
if(CMAKE_BUILD_TYPE MATCHES "Release|RelWithDebInfo|MinSizeRel")
  target_compile_options(outpost_flags INTERFACE -fstack-protector-strong -fstack-clash-protection
                                                 -D_FORTIFY_SOURCE=2 -fPIE)
  target_link_options(outpost_flags INTERFACE -Wl,-z,relro -Wl,-z,now -pie)
endif()
