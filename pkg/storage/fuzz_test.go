package storage

import "testing"

// `btrfs qgroup show` output from any btrfs-progs version (or garbage) is
// read without a panic.
func FuzzParseQgroupShow(f *testing.F) {
	f.Add("qgroupid         rfer         excl     max_rfer     max_excl \n--------         ----         ----     --------     -------- \n0/5          16.00KiB     16.00KiB         none         none \n0/256        1048576      16384        10485760     none\n")
	f.Add("Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n--------    ----------    ---------  --------------  -------------   ---- \n0/256         16.00KiB     16.00KiB        64.00MiB           none   projects/a\n")
	f.Add("qgroupid\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		parseQgroupShow(out)    //nolint:errcheck // the property is: no panic
		parseQgroupParents(out) //nolint:errcheck
	})
}
