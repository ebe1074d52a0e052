package sandbox

import "syscall"

// namespaces makes the command start in new user, mount and pid
// namespaces, as root of the user namespace: uid and gid outside.
func namespaces(a *syscall.SysProcAttr, uid, gid int) error {
	a.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	a.GidMappingsEnableSetgroups = false
	return nil
}
