/* Which rule each node gets (docs/method.md §3.2–§3.4), decided from the graph before any
 * run, so `relprop inspect` can print it. Nodes are classified into kinds by
 * structure alone (never by name): the conv on the pixels, linear maps with a
 * constant weight and their bias Add, products and sums of activations, data
 * movement, unary ops, and unary regions — a normalisation or activation an
 * exporter decomposed into primitive ops, which gets the identity rule as a
 * whole. A rule set (rules/sets.h) maps kinds, op types and node names to
 * rules; "paper" reproduces the reference. */
#ifndef RP_RULES_ASSIGN_H
#define RP_RULES_ASSIGN_H

#include "rules/rule.h"

typedef enum rp_node_kind {
    RP_KIND_NONE = 0,   /* folded, or not on any relevance path */
    RP_KIND_FIRST_CONV, /* the Conv reading the image input */
    RP_KIND_LINEAR,     /* MatMul/Gemm/Conv/Einsum with one constant operand */
    RP_KIND_BIAS,       /* Add of a constant right after a linear map: belongs to it */
    RP_KIND_PRODUCT,    /* MatMul/Einsum/Mul of two activations */
    RP_KIND_SUM,        /* Add/Sub of two activations, or of an activation and a non-bias constant */
    RP_KIND_REGION,     /* last node of a unary region: relevance goes to the region's input */
    RP_KIND_IN_REGION,  /* inside a unary region: skipped */
    RP_KIND_DATA,       /* data movement (and ReduceSum/ReduceMean outside a region) */
    RP_KIND_UNARY,      /* softmax, norms, activations, scaling by a constant */
    RP_KIND_UNKNOWN     /* no rule fits: an error if relevance reaches it */
} rp_node_kind;

const char *rp_node_kind_name(rp_node_kind k);

typedef struct rp_assignment {
    int n_nodes;
    rp_node_kind *kind;
    const rp_rule **rule;     /* NULL where the rule set gives none (and for NONE, IN_REGION) */
    rp_rule_params *params;
    int *region_input;        /* REGION nodes: the value the region's relevance goes to; else -1 */
    void **state;             /* rule state per node */
    size_t scratch_floats;    /* the most any node asked for */
    /* REGION nodes are shown to rules as one unary node: a synthetic node
     * with the region's input as its only input (and no kernel). */
    rp_node *region_node;     /* n_nodes entries, used where kind == REGION */
    rp_tensor **region_in_t;  /* n_nodes entries: the region input's tensor */
    rp_rule_node *view;       /* n_nodes entries: what prepare / apply see */
    rp_rule_registry *registry; /* retained while the assignment lives (plugin rules), or NULL */
    bool needs_gradient;      /* some assigned rule has RP_RULE_NEEDS_GRADIENT */
    rp_read_side *side;       /* per node: for the route rule on a pure move, the side it reads */
} rp_assignment;

/* Classify every node and give it the rule of rule_set — a built-in set
 * name ("paper", "attnlrp", ...) or a JSON file — resolving rule names
 * through reg (NULL: built-in rules only). The graph must be prepared. On
 * failure *a is left empty; messages name the set, entry, rule, node, op. */
rp_status rp_assign_rules(const rp_graph *g, const char *rule_set, rp_rule_registry *reg, rp_assignment *a,
                          rp_error *err);
void rp_assignment_free(rp_assignment *a);

/* Set keep[v] for the forward values the assigned rules read (rp_rule.flags;
 * everything of the node for a rule that does not declare it), choosing for
 * the route rule on pure moves the side that keeps least (a->side). */
void rp_assignment_mark_reads(const rp_graph *g, rp_assignment *a, bool *keep);

/* A short key identifying (rule_set, reg, the registry's plugins, the file's
 * size and mtime when rule_set is a file): equal keys give equal
 * assignments, so a model can keep one. */
void rp_assign_cache_key(const char *rule_set, const rp_rule_registry *reg, char *buf, size_t len);

#endif
