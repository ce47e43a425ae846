//go:build linux

package lab

import (
	"os"
	"slices"
	"strconv"
)

// OpenDescriptorNumbers lists the process's open descriptors by number, lowest first, from
// /proc/self/fd, less the one that reads the directory. It needs a free descriptor itself,
// so under EMFILE it fails too.
func OpenDescriptorNumbers() ([]int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	self := int(d.Fd())
	fds := make([]int, 0, len(names))
	for _, name := range names {
		if fd, err := strconv.Atoi(name); err == nil && fd != self {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return fds, nil
}

// --8<-- [start:descriptors-below]

// DescriptorsBelow counts the open descriptors numbered below limit: the ones that take
// room in the table. EMFILE means no free number below RLIMIT_NOFILE (alloc_fd, in
// fs/file.c), so a descriptor numbered above it takes none: one inherited, say, from
// whatever started go test and left it open without close-on-exec.
func DescriptorsBelow(limit int) (int, error) {
	fds, err := OpenDescriptorNumbers()
	if err != nil {
		return 0, err
	}
	n, _ := slices.BinarySearch(fds, limit)
	return n, nil
}

// --8<-- [end:descriptors-below]
