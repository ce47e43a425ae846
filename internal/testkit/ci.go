package testkit

import (
	"os"
	"strconv"
)

// InCI tells whether this run is CI's, where a test that cannot run fails instead of
// skipping: a proof that did not run proved nothing. .ci/run sets CI=true; any value
// strconv.ParseBool takes as true counts (1, t, TRUE...), so that a CI system that says
// CI=1 is not mistaken for a developer's machine and let skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}
