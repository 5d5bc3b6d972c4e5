/*
 * version.c: the build stamps, the only file compiled with them (the
 * Makefile's VERSION and STATE_LAYOUT), so that restamping a build, or
 * linking a second binary with other stamps for the upgrade test, compiles
 * this one file.
 */
#include "config.h"
#include "upgrade.h"

#ifndef UPPERD_VERSION_STRING
#define UPPERD_VERSION_STRING "0.1.0"
#endif

const char upperd_version[] = UPPERD_VERSION_STRING;
const unsigned upg_state_layout = UPG_STATE_LAYOUT;
