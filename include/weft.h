/* weft.h - the umbrella header: include this one. */
#ifndef WEFT_H
#define WEFT_H

#include <stdint.h>
#include <stdio.h>
#include <weft/common.h>
#include <weft/task.h>
#include <weft/io.h>
#include <weft/sched.h>
#include <weft/runtime.h>
#include <weft/stats.h>
#include <weft/executor.h>
#include <weft/sync.h>
#include <weft/process.h>

#endif
