/* stb_image compiled into the fuzz targets with the sanitizers and coverage,
 * instead of Debian's prebuilt libstb: the decoders relprop hands untrusted
 * images to are then fuzzed too. The linker takes these definitions from
 * the archive before it reaches -lstb. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
