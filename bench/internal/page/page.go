// Package page rewrites the generated sections of a docs page, between a start and an end
// marker, and leaves the prose around them as the people who wrote it left it.
package page

import (
	"fmt"
	"os"
	"strings"
)

// ReplaceSection puts body between the markers start and end in the file at path.
func ReplaceSection(path, start, end, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, start), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no generated section (%q ... %q)", path, start, end)
	}
	s = s[:i+len(start)] + "\n\n" + body + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
