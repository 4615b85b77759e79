package consulrecovery

import (
	"fmt"
	"os"
	"syscall"
)

// chownLike gives path the owner and group of like.
func chownLike(path, like string) error {
	fi, err := os.Stat(like)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", like, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give %s to the consul agent's user: %w", path, err)
	}
	return nil
}
