# Renames from the "Addresses and numbers" refactoring (branch addr).
# Apply to C sources and headers: sed -i -E -f rename.sed FILE...
# (GNU sed; \b is a word boundary, so longer names are never cut.)
# Address helpers moved from net.{h,c} to addr.{h,c}; net.h includes addr.h,
# so files that still include net.h need no #include change. acl.h,
# config.h, proxyproto.h and resolver.h now include addr.h instead of net.h:
# a file that calls net_* and got net.h only through one of those must
# include net.h itself (conn.h, udpassoc.h, bindcmd.h, listener.h and
# metrics.h still include it). Not renames, for the merge: struct config's
# log_syslog is an int (0/1) now; struct dns_response's addrs are union
# sockaddr_any (struct dns_addr is gone).
s/\bnet_parse_addr_port\b/addr_parse_with_port/g
s/\bnet_parse_addr\b/addr_parse/g
s/\bnet_addr_len\b/addr_len/g
s/\bnet_addr_port\b/addr_port/g
s/\bnet_addr_set_port\b/addr_set_port/g
s/\bnet_addr_equal\b/addr_equal/g
s/\bnet_addr_ip_equal\b/addr_ip_equal/g
s/\bnet_addr_unmap\b/addr_unmap/g
s/\bnet_addr_is_loopback\b/addr_is_loopback/g
s/\bnet_addr_is_unspecified\b/addr_is_unspecified/g
s/\bnet_addr_format\b/addr_format/g
s/\bnet_ip_format\b/addr_ip_format/g
s/\bNET_ADDRSTRLEN\b/ADDR_STRLEN/g
# log: one level-name lookup shared by config and log. Not a plain rename:
# the new function returns bool and writes the level through a pointer,
# takes only the exact lower-case names, and "warning" is gone. Nothing
# called the old one on this branch; a caller elsewhere fails to compile.
s/\blog_level_from_string\b/log_level_from_name/g
