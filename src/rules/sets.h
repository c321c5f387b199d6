/* Rule sets (composites): an ordered list of entries, each a selector — a
 * node kind, an op-type glob, a node-name glob, any combination — and the
 * rule (with parameters) that matching nodes get. The last matching entry
 * wins, so a set reads as "defaults first, exceptions after". Built-in sets
 * are tables here; a JSON file gives a base set and entries appended to it
 * (docs/rules.md has the format). */
#ifndef RP_RULES_SETS_H
#define RP_RULES_SETS_H

#include "rules/assign.h"

typedef struct rp_rule_entry {
    int kind;             /* rp_node_kind, or -1: any */
    char *op;             /* fnmatch glob on the op type, or NULL */
    char *node;           /* fnmatch glob on the node name, or NULL */
    char *rule;           /* rule name, resolved through a registry by the assignment */
    rp_rule_params params;
    int index;            /* position in the file (1-based) for messages; 0 for a base entry */
} rp_rule_entry;

typedef struct rp_rule_set {
    char *name;           /* the built-in name or the file's path */
    char *base;           /* the built-in set a file starts from */
    int n;
    rp_rule_entry *e;
} rp_rule_set;

/* A built-in set by name, or — when `spec` names no built-in set and looks
 * like a path (ends in .json or contains '/') — a JSON file. Messages name
 * the file and the entry. */
rp_status rp_rule_set_load(const char *spec, rp_rule_set *out, rp_error *err);
void rp_rule_set_free(rp_rule_set *s);
/* Whether spec names a file rather than a built-in set. */
bool rp_rule_set_is_file(const char *spec);

/* Index of the last entry matching the node, or -1. Nodes of kind NONE and
 * IN_REGION never match. */
int rp_rule_set_match(const rp_rule_set *s, const rp_node *n, rp_node_kind kind);

/* Kind by name ("first_conv", ..., "norm" = "region"); -1 if unknown. */
int rp_node_kind_parse(const char *name);

#endif
