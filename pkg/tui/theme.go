package tui

import (
	"charm.land/lipgloss/v2"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// Theme is the dashboard's styles. The monochrome theme (NO_COLOR, or
// --theme mono) uses only bold, reverse and underline, so every state
// stays readable on any terminal; colour only repeats what the text says.
type Theme struct {
	Mono     bool
	Title    lipgloss.Style
	Header   lipgloss.Style
	Selected lipgloss.Style
	Dim      lipgloss.Style
	Key      lipgloss.Style
	Good     lipgloss.Style
	Busy     lipgloss.Style
	Bad      lipgloss.Style
	Warn     lipgloss.Style
	Box      lipgloss.Style
	Tab      lipgloss.Style
	TabOn    lipgloss.Style
}

// ColorTheme is the default theme.
func ColorTheme() Theme {
	s := lipgloss.NewStyle
	return Theme{
		Title:    s().Bold(true),
		Header:   s().Bold(true).Foreground(lipgloss.Color("12")),
		Selected: s().Reverse(true),
		Dim:      s().Foreground(lipgloss.Color("8")),
		Key:      s().Bold(true).Foreground(lipgloss.Color("14")),
		Good:     s().Foreground(lipgloss.Color("2")),
		Busy:     s().Foreground(lipgloss.Color("3")),
		Bad:      s().Bold(true).Foreground(lipgloss.Color("1")),
		Warn:     s().Foreground(lipgloss.Color("3")),
		Box:      s().Border(lipgloss.RoundedBorder()).BorderForeground(lipgloss.Color("12")).Padding(0, 1),
		Tab:      s().Padding(0, 1),
		TabOn:    s().Padding(0, 1).Reverse(true).Bold(true),
	}
}

// MonoTheme uses no colour at all.
func MonoTheme() Theme {
	s := lipgloss.NewStyle
	return Theme{
		Mono:     true,
		Title:    s().Bold(true),
		Header:   s().Bold(true).Underline(true),
		Selected: s().Reverse(true),
		Dim:      s(),
		Key:      s().Bold(true),
		Good:     s(),
		Busy:     s(),
		Bad:      s().Bold(true),
		Warn:     s().Bold(true),
		Box:      s().Border(lipgloss.NormalBorder()).Padding(0, 1),
		Tab:      s().Padding(0, 1),
		TabOn:    s().Padding(0, 1).Reverse(true).Bold(true),
	}
}

// status styles a host status.
func (t Theme) status(st model.Status) lipgloss.Style {
	switch st {
	case model.StatusRunning:
		return t.Good
	case model.StatusError:
		return t.Bad
	case model.StatusOff, model.StatusDeprovisioned:
		return t.Dim
	}
	return t.Busy
}

// projectState styles a project state.
func (t Theme) projectState(st model.ProjectState) lipgloss.Style {
	switch st {
	case model.ProjectRunning:
		return t.Good
	case model.ProjectError:
		return t.Bad
	case model.ProjectStopped, model.ProjectDeleted:
		return t.Dim
	}
	return t.Busy
}

// transitional reports whether a host status is on its way somewhere.
func transitional(st model.Status) bool {
	switch st {
	case model.StatusProvisioning, model.StatusStarting, model.StatusStopping, model.StatusDeprovisioning:
		return true
	}
	return false
}

func projectTransitional(st model.ProjectState) bool {
	switch st {
	case model.ProjectCreating, model.ProjectStarting, model.ProjectStopping, model.ProjectDeleting:
		return true
	}
	return false
}
