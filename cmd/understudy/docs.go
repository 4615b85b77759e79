package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newDocsCmd writes the man pages of every command, for the Debian package
// (make deb); hidden, as cobra's completion command is not: operators use
// the pages, not this.
func newDocsCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "docs --man-dir DIR",
		Short:  "Write understudy's man pages (section 1), one per command, into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			// SOURCE_DATE_EPOCH (reproducible builds) dates the pages by
			// the commit, not by the build.
			date := time.Now()
			if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
				sec, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
				}
				date = time.Unix(sec, 0).UTC()
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Title: "UNDERSTUDY", Section: "1", Source: "understudy " + version, Manual: "understudy manual", Date: &date}
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("write the man pages into %s: %w", dir, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "man-dir", "", "the directory to write the pages into")
	_ = cmd.MarkFlagRequired("man-dir")
	return cmd
}
