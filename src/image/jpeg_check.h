/* A JPEG's marker structure, checked before its bytes reach stb_image.
 *
 * Debian's stb_image (0.0~git20220908, v2.27) trusts the segments it parses:
 * a DHT whose 16 code counts sum past 256 makes it write past its Huffman
 * tables, and a scan naming a Huffman table no DHT defined makes it decode
 * with uninitialised tables (reading past stbi__huffman.maxcode[18]). Both
 * are memory-unsafe, so relprop walks the file first and refuses what stb
 * would mishandle; what passes decodes exactly as stb alone decodes it (the
 * bytes are not changed). */
#ifndef RP_IMAGE_JPEG_CHECK_H
#define RP_IMAGE_JPEG_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Walk the n bytes of a JPEG file b (path only names it in messages):
 * SOI, then each marker segment, through every scan, to EOI. Refused, with
 * a message naming path, the segment, its byte offset and what is wrong:
 *   RP_ERR_FORMAT ("truncated JPEG: ..."): a segment running past the end of
 *     the file, no scan, or no end-of-image marker after the last scan;
 *   RP_ERR_FORMAT ("corrupt JPEG: ..."): segment lengths that do not match
 *     their content; a DHT table whose class is not 0/1, whose id is above
 *     3, whose code counts sum past 256 or do not form a prefix code; a DQT
 *     table whose precision is not 0/1 or whose id is above 3; a frame
 *     header (SOF) with 0 or more than 4 components, a zero width or height,
 *     sampling factors outside 1..4, quantisation table ids above 3 or two
 *     components with one id; a second frame header; a scan (SOS) before the
 *     frame header, with 0 or too many components, naming a component the
 *     frame lacks, or using a Huffman or quantisation table no earlier
 *     segment defined; a frame component no scan codes; a restart marker
 *     outside a scan; an unknown marker;
 *   RP_ERR_UNSUPPORTED ("unsupported JPEG: ..."): frames stb cannot decode
 *     (arithmetic coding, lossless, hierarchical, samples other than 8-bit,
 *     2 components, a height given only by a DNL marker);
 *   RP_ERR_VALUE: width x height above max_pixels (if max_pixels > 0).
 * Huffman tables are checked per scan, as the decoder uses them: a baseline
 * or extended scan needs the DC and AC tables of each of its components; a
 * progressive DC scan needs the DC tables (none when refining), a
 * progressive AC scan the AC table. A table may be defined anywhere before
 * the scan that uses it, between scans included. */
rp_status rp_jpeg_check(const char *path, const uint8_t *b, size_t n, int64_t max_pixels, rp_error *err);

#endif
