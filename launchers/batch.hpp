// Batch launchers are data: submit and cancel commands, how to find the job id in the submit
// command's output, and a job-script template (replaceable per system in the profile's
// ipcluster_config.json). The template fields are {n}, {queue}, {account}, {walltime},
// {extra}, {cluster_id}, {profile_dir}, {command} (the ipengine or ipcontroller command line).
#pragma once

#include <string>
#include <vector>

#include "launchers/launcher.hpp"

namespace ipp::launchers {

struct BatchSystem {
  std::string name;                     // Slurm, PBS, SGE, LSF, HTCondor
  std::vector<std::string> submit;      // the script path is appended (HTCondor: submit file)
  std::vector<std::string> cancel;      // the job id is appended
  std::string job_id_regex;             // first capture group is the job id
  std::string engine_template, controller_template;
};

const BatchSystem* FindBatchSystem(const std::string& canonical_name);
// Fills a template's {fields}; unknown fields are an error naming them.
Result<std::string> FillTemplate(const std::string& text, const Json& fields);
Result<std::string> ParseJobId(const BatchSystem& system, const std::string& submit_output);

}  // namespace ipp::launchers
