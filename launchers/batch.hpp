// Batch launchers are data: submit and cancel commands, how to find the job id in the submit
// command's output, and a job-script template (replaceable per system in the profile's
// ipcluster_config.json). The template fields are {n}, {queue}, {account}, {walltime},
// {queue_line}, {account_line}, {walltime_line} (those three as directives, empty when not
// set), {extra}, {cluster_id}, {profile_dir}, {log_dir}, {environment} ("export NAME='value'"
// lines; HTCondor: an "environment" command), {command} (the ipengine or ipcontroller command
// line). Everything one system does differently is in its row. Each job writes its output to
// files of its own in {log_dir}, named by its job id (JobOutput).
#pragma once

#include <string>
#include <vector>

#include "launchers/launcher.hpp"

namespace ipp::launchers {

struct BatchSystem {
  std::string name;                     // Slurm, PBS, SGE, LSF, HTCondor
  // How a job script states the queue, account and walltime: the directive prefix ("#SBATCH ";
  // empty for HTCondor, whose submit file has no such lines) and each one's flag.
  std::string directive, queue_flag, account_flag, walltime_flag;
  std::vector<std::string> submit;      // the script path is appended (HTCondor: submit file)
  std::vector<std::string> cancel;      // the job id is appended
  std::string job_id_regex;             // first capture group is the job id
  std::string engine_template, controller_template;
  // Job states (--adapt): a command listing the queue, a regex matching one line of its output
  // (first capture the job id, second its state), and the states that mean waiting and running.
  // A state in neither list, or a job no longer listed, has ended. Empty `status`: not polled.
  std::vector<std::string> status;
  std::string status_regex;
  std::vector<std::string> queued_states, running_states;
};

// "12345" from "12345.server", "12345[].server", "12345.1-4:1"; ids without leading digits (the
// Local launcher's "local-3") as they are. Engines and submit commands spell one job differently.
std::string NormalizeJobId(const std::string& id);

const BatchSystem* FindBatchSystem(const std::string& canonical_name);
// Fills a template's {fields}; unknown fields are an error naming them.
Result<std::string> FillTemplate(const std::string& text, const Json& fields);
// {queue_line}, {account_line}, {walltime_line} for the "queue", "account" and "walltime" of
// `section` (the system's part of ipcluster_config.json), e.g. "#SBATCH --partition=debug\n".
Json DirectiveLines(const BatchSystem& system, const Json& section);
// Where the default template of `system` has job `job_id` write its output: a file, or a
// pattern with * for a job of several tasks with a file each.
std::string JobOutput(const BatchSystem& system, bool controller, const std::string& log_dir, const std::string& job_id);
Result<std::string> ParseJobId(const BatchSystem& system, const std::string& submit_output);
// The states of `jobs` (as the submit command named them) from the status command's output;
// an array job's tasks make one job, running when any task runs.
std::vector<JobState> ParseJobStates(const BatchSystem& system, const std::string& status_output,
                                     const std::vector<std::string>& jobs);

}  // namespace ipp::launchers
