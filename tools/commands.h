/* The qualm subcommands: each takes argc/argv with argv[0] = its name. */
#ifndef QLM_TOOLS_COMMANDS_H
#define QLM_TOOLS_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_check(int argc, char **argv);
/* qualm export --device: check first and print the summary; -1 = go on,
 * else the exit code (a format the device cannot read, a bad file). */
int check_for_export(const char *path, const char *format, const char *device, int io);
int cmd_bench(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_results(int argc, char **argv);

#endif
