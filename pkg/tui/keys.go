package tui

import (
	"charm.land/bubbles/v2/key"
)

func bind(help string, keys ...string) key.Binding {
	desc := keys[0]
	switch desc {
	case "up":
		desc = "↑/k"
	case "down":
		desc = "↓/j"
	}
	return key.NewBinding(key.WithKeys(keys...), key.WithHelp(desc, help))
}

// keyMap is every key the dashboard knows; the footer shows those of the
// current view and ? all of them.
type keyMap struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
	Hosts, Projects, Logs, Catalog, Next    key.Binding
	Details, Back, Filter, Sort, Reverse    key.Binding
	Refresh, Help, Quit, ForceQuit          key.Binding
	Start, Stop, Delete, Upgrade, NewProj   key.Binding
	Restart, Snapshot, Shell, Move, Backup  key.Binding
	Clone                                   key.Binding
	AllProjects, HostProjects, Follow       key.Binding
	Create                                  key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Up:           bind("up", "up", "k"),
		Down:         bind("down", "down", "j"),
		PageUp:       bind("page up", "pgup", "ctrl+b"),
		PageDown:     bind("page down", "pgdown", "ctrl+f", "space"),
		Top:          bind("first", "g", "home"),
		Bottom:       bind("last", "G", "end"),
		Hosts:        bind("hosts", "1"),
		Projects:     bind("projects", "2"),
		Logs:         bind("logs", "3"),
		Catalog:      bind("catalog", "4"),
		Next:         bind("next view", "tab"),
		Details:      bind("details", "enter"),
		Back:         bind("back", "esc"),
		Filter:       bind("filter", "/"),
		Sort:         bind("sort column", "o"),
		Reverse:      bind("reverse sort", "O"),
		Refresh:      bind("refresh now", "ctrl+r"),
		Help:         bind("all keys", "?"),
		Quit:         bind("quit", "q"),
		ForceQuit:    bind("quit now", "ctrl+c"),
		Start:        bind("start", "s"),
		Stop:         bind("stop", "x"),
		Delete:       bind("delete", "D"),
		Upgrade:      bind("upgrade agent", "U"),
		NewProj:      bind("new project", "n"),
		Restart:      bind("restart", "R"),
		Snapshot:     bind("snapshot", "S"),
		Shell:        bind("shell", "e"),
		Move:         bind("move", "m"),
		Backup:       bind("backup", "b"),
		Clone:        bind("clone", "c"),
		AllProjects:  bind("all/host projects", "a"),
		HostProjects: bind("its projects", "p"),
		Follow:       bind("follow", "f"),
		Create:       bind("create host", "enter"),
	}
}
